#!/usr/bin/python3
"""Time a Llama in eager PyTorch (float32, CPU), for comparison with simnpo's bench_llama.

The model is an eager LlamaForCausalLM written as Hugging Face's eager implementation is (no
transformers package here; torch 1.13 has no scaled_dot_product_attention): nn.Embedding,
nn.Linear projections without biases, RMSNorm (x * rsqrt(mean(x^2) + eps) * weight), rotate-half
RoPE, grouped-query attention by repeat_interleave of the KV heads, batched matmul + additive
causal mask + softmax, SwiGLU MLP, final RMSNorm, lm_head (tied to the embedding or not).
Weights are Hugging Face's initialisation: N(0, 0.02) for projections and embeddings, RMSNorm 1.
--check verifies this model in float64 against tests/reference/llama_reference.py (the
independent reference simnpo's Llama is tested against), and the scored positions and losses
against the reference's scoring.

Workloads (every position of every row scored: a prompt of one token, an answer of T tokens):
  llama_small  (a) L=12, C=768, H=12, KV=4, D=64, I=2048, V=32000, untied, T=64, B=4:
               "forward" (under torch.no_grad) and "forward_backward" (loss = mean token
               log-probability, backward), the latter timed with zero_grad(set_to_none=False)
               and =True, the faster reported.
  llama_1b     (b) Llama-3.2-1B's shape: L=16, C=2048, H=32, KV=8, D=64, I=8192, V=128256, tied,
               rope_theta 500000 (llama3 rope scaling), random weights: "unlearn_step", one
               SimNPO+GD step on B = 2 forget + 2 retain rows of T = 128:
                 L = -(2/beta) mean_i log sigmoid(-beta * l_i/|y_i| - gamma)  (forget rows,
                     l_i = sum of the row's token log-probs; beta 2.5, gamma 0)
                   - mean token log-prob of the retain rows,
               backward, torch.optim.AdamW (lr 1e-5, weight decay 0.01; no clipping),
               zero_grad(set_to_none=True). The two batches are run as two forward passes
               ("separate") or as one over the 4 rows ("concatenated", as simnpo does when the
               rows are of one length): --layout both times the two, the faster reported.
               --llama1b-layers N keeps only N decoder layers (fp32 with gradients and AdamW's
               moments, the full 16 layers need ~23 GiB here); llama_1b refuses to start when its
               estimated peak (compare_llama.py's) exceeds MemAvailable, unless --ignore-memory.

Prints one JSON object per line:
  {"config", "phase", "median_ms", "min_ms", "repeats", "threads", "loss", ...}
and with --peak-memory, after each config (run in that order, llama_small first):
  {"config", "metric": "peak_rss", "peak_rss_mib"}        (the process's peak so far)
Run llama_1b alone (--config llama_1b) for its own peak.

Usage:  /usr/bin/python3 benchmarks/torch_llama.py [--threads 2] [--repeats 5] [--warmup 1]
            [--config llama_small] [--config llama_1b] [--llama1b-layers 16]
            [--layout separate|concatenated|both] [--peak-memory] [--ignore-memory]
        /usr/bin/python3 benchmarks/torch_llama.py --check
"""

import argparse
import json
import math
import os
import resource
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import torch_gpt2  # noqa: E402  (sets the thread environment before torch loads; time_it)
import compare_llama  # noqa: E402  (llama_1b's memory estimate)
import torch  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
import llama_reference as ref  # noqa: E402

BETA, GAMMA = 2.5, 0.0


def llama_small_config():
    return {"model_type": "llama", "vocab_size": 32000, "hidden_size": 768, "intermediate_size": 2048,
            "num_hidden_layers": 12, "num_attention_heads": 12, "num_key_value_heads": 4, "head_dim": 64,
            "max_position_embeddings": 2048, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
            "tie_word_embeddings": False, "hidden_act": "silu"}


def llama_1b_config(layers=16):
    """Llama-3.2-1B's config.json (with `layers` decoder layers)."""
    return {"model_type": "llama", "vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 8192,
            "num_hidden_layers": layers, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
            "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
            "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                             "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
            "tie_word_embeddings": True, "hidden_act": "silu"}


# ----------------------------------------------------------------------------- eager Llama

class RMSNorm(nn.Module):
    def __init__(self, width, eps, dtype):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width, dtype=dtype))
        self.eps = eps

    def forward(self, x):
        variance = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(variance + self.eps))


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg, dtype):
        super().__init__()
        C, self.H, self.KV, self.D = cfg["hidden_size"], cfg["num_attention_heads"], ref.kv_heads(cfg), \
            ref.head_dim(cfg)
        self.q_proj = nn.Linear(C, self.H * self.D, bias=False, dtype=dtype)
        self.k_proj = nn.Linear(C, self.KV * self.D, bias=False, dtype=dtype)
        self.v_proj = nn.Linear(C, self.KV * self.D, bias=False, dtype=dtype)
        self.o_proj = nn.Linear(self.H * self.D, C, bias=False, dtype=dtype)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.H, self.D).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.KV, self.D).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.KV, self.D).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(self.H // self.KV, dim=1)
        v = v.repeat_interleave(self.H // self.KV, dim=1)
        scores = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.D) + mask
        probs = torch.softmax(scores, dim=-1)
        y = torch.matmul(probs, v).transpose(1, 2).reshape(B, T, self.H * self.D)
        return self.o_proj(y)


class MLP(nn.Module):
    def __init__(self, cfg, dtype):
        super().__init__()
        C, I = cfg["hidden_size"], cfg["intermediate_size"]
        self.gate_proj = nn.Linear(C, I, bias=False, dtype=dtype)
        self.up_proj = nn.Linear(C, I, bias=False, dtype=dtype)
        self.down_proj = nn.Linear(I, C, bias=False, dtype=dtype)

    def forward(self, x):
        return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg, dtype):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"], dtype)
        self.self_attn = Attention(cfg, dtype)
        self.post_attention_layernorm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"], dtype)
        self.mlp = MLP(cfg, dtype)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class LlamaModel(nn.Module):
    def __init__(self, cfg, dtype):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"], dtype=dtype)
        self.layers = nn.ModuleList(DecoderLayer(cfg, dtype) for _ in range(cfg["num_hidden_layers"]))
        self.norm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"], dtype)


class LlamaForCausalLM(nn.Module):
    """Parameter names are Hugging Face's (model.layers.0.self_attn.q_proj.weight, ...)."""

    def __init__(self, cfg, dtype=torch.float32):
        super().__init__()
        ref.check_config(cfg)
        assert cfg["model_type"] == "llama" and not ref.biased(cfg)
        self.cfg, self.dtype = cfg, dtype
        self.model = LlamaModel(cfg, dtype)
        self.lm_head = nn.Linear(cfg["hidden_size"], cfg["vocab_size"], bias=False, dtype=dtype)
        if ref.tied(cfg):
            self.lm_head.weight = self.model.embed_tokens.weight
        self._tables_T = None

    def tables(self, T):
        """cos, sin [T, D] (the reference's inv_freq, rope_scaling included) and the causal mask."""
        if self._tables_T != T:
            cos, sin = ref.rope_tables(self.cfg, T)
            self._cos, self._sin = cos.to(self.dtype), sin.to(self.dtype)
            mask = torch.full((T, T), torch.finfo(self.dtype).min, dtype=self.dtype).triu(1)
            self._mask, self._tables_T = mask, T
        return self._cos, self._sin, self._mask

    def forward(self, ids):
        cos, sin, mask = self.tables(ids.shape[1])
        x = self.model.embed_tokens(ids)
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask)
        return self.lm_head(self.model.norm(x))


def init_hf(model, seed, std=0.02):
    """Hugging Face's _init_weights: N(0, std) for nn.Linear and nn.Embedding, RMSNorm weights 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():  # a tied lm_head is listed once
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, std, generator=g)
    return model


def token_logprobs(model, seq):
    """seq [B, T + 1]: reads seq[:, :T], scores every position t on seq[:, t + 1] -> [B, T]."""
    logits = model(seq[:, :-1].contiguous())
    return torch.log_softmax(logits, dim=-1).gather(2, seq[:, 1:].unsqueeze(2)).squeeze(2)


def simnpo_gd_loss(forget_lp, retain_lp, beta=BETA, gamma=GAMMA):
    """SimNPO on the forget rows (length-normalised: l_i / |y_i|) + token-mean NLL on the retain rows."""
    per_token = forget_lp.sum(dim=1) / forget_lp.shape[1]
    simnpo = (-2.0 / beta) * nn.functional.logsigmoid(-beta * per_token - gamma).mean()
    return simnpo - retain_lp.mean()


def tokens(cfg, B, T, generator):
    return torch.randint(0, cfg["vocab_size"], (B, T + 1), generator=generator)


def peak_rss_mib():
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)  # KiB on Linux


# ----------------------------------------------------------------------------- workloads

def run_small(args):
    cfg, T, B = llama_small_config(), 64, 4
    model = init_hf(LlamaForCausalLM(cfg), seed=0)
    seq = tokens(cfg, B, T, torch.Generator().manual_seed(1))

    def forward():
        with torch.no_grad():
            return token_logprobs(model, seq).mean().item()

    def forward_backward(set_to_none):
        model.zero_grad(set_to_none=set_to_none)
        loss = token_logprobs(model, seq).mean()
        loss.backward()
        return loss.item()

    common = {"config": "llama_small", "repeats": args.repeats, "threads": args.threads,
              "params": sum(p.numel() for p in model.parameters()), "loss": round(forward(), 6)}
    med, low = torch_gpt2.time_it(forward, args.warmup, args.repeats)
    print(json.dumps(dict(common, phase="forward", median_ms=round(med, 3), min_ms=round(low, 3))), flush=True)
    # Gradients zeroed in place and accumulated into, or dropped and written fresh by backward
    # (PyTorch 2's default): the faster is reported, PyTorch at its best.
    timings = []
    for set_to_none in (False, True):
        med, low = torch_gpt2.time_it(lambda: forward_backward(set_to_none), args.warmup, args.repeats)
        timings.append((med, low, set_to_none))
    med, low, set_to_none = min(timings)
    print(json.dumps(dict(common, phase="forward_backward", median_ms=round(med, 3), min_ms=round(low, 3),
                          zero_grad_set_to_none=set_to_none)), flush=True)
    if args.peak_memory:
        print(json.dumps({"config": "llama_small", "metric": "peak_rss", "peak_rss_mib": peak_rss_mib()}),
              flush=True)


def run_1b(args):
    need, available = compare_llama.estimated_peak_mib(args.llama1b_layers), compare_llama.mem_available_mib()
    if need > available and not args.ignore_memory:
        sys.exit(f"torch_llama.py: llama_1b with {args.llama1b_layers} layers needs ~{need:.0f} MiB, MemAvailable is "
                 f"{available:.0f} MiB: fewer layers with --llama1b-layers N (or --ignore-memory)")
    cfg, T, B = llama_1b_config(args.llama1b_layers), 128, 2
    model = init_hf(LlamaForCausalLM(cfg), seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01)
    g = torch.Generator().manual_seed(1)
    forget, retain = tokens(cfg, B, T, g), tokens(cfg, B, T, g)
    both = torch.cat([forget, retain])

    def step(concatenated):
        if concatenated:
            lp = token_logprobs(model, both)
            loss = simnpo_gd_loss(lp[:B], lp[B:])
        else:
            loss = simnpo_gd_loss(token_logprobs(model, forget), token_logprobs(model, retain))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    layouts = {"separate": [False], "concatenated": [True], "both": [False, True]}[args.layout]
    first_loss = step(layouts[0])  # the first step allocates AdamW's moments: outside the timing
    results = []
    for concatenated in layouts:
        losses = []
        med, low = torch_gpt2.time_it(lambda: losses.append(step(concatenated)), max(0, args.warmup - 1),
                                      args.repeats)
        results.append({"config": "llama_1b", "phase": "unlearn_step", "median_ms": round(med, 3),
                        "min_ms": round(low, 3), "repeats": args.repeats, "threads": args.threads,
                        "layers": args.llama1b_layers, "params": sum(p.numel() for p in model.parameters()),
                        "batches": "concatenated" if concatenated else "separate",
                        "first_loss": round(first_loss, 6), "loss": round(losses[-1], 6)})
    print(json.dumps(min(results, key=lambda r: r["median_ms"])), flush=True)
    if args.peak_memory:
        print(json.dumps({"config": "llama_1b", "metric": "peak_rss", "peak_rss_mib": peak_rss_mib(),
                          "layers": args.llama1b_layers}), flush=True)


# ----------------------------------------------------------------------------- --check

def check():
    """This eager model against the float64 reference, on small configs of both workloads' kinds."""
    torch.manual_seed(0)
    worst = 0.0
    for tie, scaling in ((False, None), (True, llama_1b_config()["rope_scaling"])):
        cfg = {"model_type": "llama", "vocab_size": 97, "hidden_size": 64, "intermediate_size": 96,
               "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
               "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
               "tie_word_embeddings": tie, "hidden_act": "silu"}
        if scaling:
            cfg["rope_scaling"] = dict(scaling, original_max_position_embeddings=16)
        model = init_hf(LlamaForCausalLM(cfg, torch.float64), seed=3, std=0.2)
        params = dict(model.named_parameters())
        assert set(params) == set(ref.param_shapes(cfg)) and all(
            list(params[n].shape) == s for n, s in ref.param_shapes(cfg).items()), "parameter names or shapes"
        p = {n: t.detach() for n, t in params.items()}
        if tie:
            assert model.lm_head.weight is model.model.embed_tokens.weight
        T, B = 12, 4
        seq = tokens(cfg, B, T, torch.Generator().manual_seed(5))
        # Logits over every position.
        with torch.no_grad():
            ours = model(seq[:, :-1])
        worst = max(worst, (ours - ref.forward(cfg, p, seq[:, :-1])).abs().max().item())
        # simnpo's examples (a prompt of one token, an answer of T): every position scored, row-major.
        examples = [{"prompt_ids": row[:1].tolist(), "answer_ids": row[1:].tolist()} for row in seq]
        _, ref_lp = ref.score(cfg, p, examples)
        with torch.no_grad():
            lp = token_logprobs(model, seq)
        assert ref_lp.shape[0] == B * T
        worst = max(worst, (lp.reshape(-1) - ref_lp).abs().max().item())
        # The losses from the reference's per-row sums, written out as simnpo's loss/forget.hpp does.
        f, r = ref_lp[:2 * T].reshape(2, T), ref_lp[2 * T:].reshape(2, T)
        expected = sum(-(2.0 / BETA) * math.log(1.0 / (1.0 + math.exp(BETA * row.sum().item() / T + GAMMA)))
                       for row in f) / 2 - r.sum().item() / (2 * T)
        with torch.no_grad():
            worst = max(worst, abs(simnpo_gd_loss(lp[:2], lp[2:]).item() - expected),
                        abs(lp.mean().item() - ref_lp.mean().item()))
        print(f"check: tied={tie} rope_scaling={'llama3' if scaling else 'none'}: worst difference so far "
              f"{worst:.3g}", flush=True)
    assert worst < 1e-10, worst
    print("check: the eager model, scored positions and losses match tests/reference/llama_reference.py")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--config", action="append", choices=["llama_small", "llama_1b"],
                    help="run only this workload (repeatable); default: both, llama_small first")
    ap.add_argument("--llama1b-layers", type=int, default=16, help="decoder layers of llama_1b (default 16)")
    ap.add_argument("--layout", choices=["separate", "concatenated", "both"], default="both",
                    help="llama_1b's forget and retain batches: two forward passes, one, or the faster")
    ap.add_argument("--ignore-memory", action="store_true",
                    help="build llama_1b even when its estimated peak exceeds MemAvailable")
    ap.add_argument("--peak-memory", action="store_true", help="print the process's peak RSS after each workload")
    ap.add_argument("--check", action="store_true", help="check the model against the float64 reference and exit")
    args = ap.parse_args()
    if args.repeats < 1 or args.llama1b_layers < 1:
        ap.error("--repeats and --llama1b-layers must be >= 1")
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    if args.check:
        check()
        return
    names = sorted(set(args.config or ["llama_small", "llama_1b"]), key=["llama_small", "llama_1b"].index)
    for name in names:
        (run_small if name == "llama_small" else run_1b)(args)


if __name__ == "__main__":
    main()
