#!/usr/bin/python3
"""Write the Llama-family golden fixtures into tests/fixtures/llama/, deterministically (fixed seeds).

Regenerate from the repository root with

    /usr/bin/python3 tests/reference/make_llama_fixtures.py

(Debian's Python with torch 1.13; no `transformers`/`safetensors` packages.) The model is the
independent float64 reference in tests/reference/llama_reference.py. Each variant directory holds

    config.json        as Hugging Face writes it (indent 2, sorted keys)
    model.safetensors  or model-0000{1,2}-of-00002.safetensors + model.safetensors.index.json
    data.jsonl         4 examples {"prompt_ids", "answer_ids"}
    expected.safetensors (F64): "logprobs" [N], "logits" [N, V] and "weights" [N] at the scored
                       positions (row-major over the right-padded batch of all 4 examples),
                       "sequence_logprobs" [B], and "grad.<P>" = dL/dP for every parameter P,
                       L = sum_n weights[n] * logprobs[n]

Every expected number is computed from the weights as read back from the written files (so BF16
rounding is included). Before writing expected.safetensors the script asserts its self-checks:
finite-difference gradients, padding invariance, fused == unfused Phi-3, a loop-by-loop attention
(GQA head mapping, sliding window, RoPE as a complex rotation of the pairs (d, d + D/2)), and that each
variant's special feature really changes the numbers.
"""

import cmath
import json
import math
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_reference as ref  # noqa: E402

F64 = torch.float64
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "llama")

# (prompt length, answer length) of the 4 examples; the longest (11) exceeds Mistral's window 4.
LENGTHS = [(1, 3), (5, 6), (3, 1), (2, 4)]

COMMON = {
    "vocab_size": 96, "hidden_size": 32, "intermediate_size": 40, "num_hidden_layers": 2,
    "num_attention_heads": 4, "max_position_embeddings": 64, "hidden_act": "silu",
    "bos_token_id": 1, "eos_token_id": 2, "initializer_range": 0.02, "use_cache": True,
    "attention_dropout": 0.0, "transformers_version": "4.46.0",
}

# name, config, stored dtype, number of shards
VARIANTS = [
    ("llama2", dict(COMMON, architectures=["LlamaForCausalLM"], model_type="llama",
                    num_key_value_heads=4, rms_norm_eps=1e-6, rope_theta=10000.0,
                    rope_scaling={"type": "linear", "factor": 2.0}, tie_word_embeddings=False,
                    attention_bias=True, mlp_bias=False, pretraining_tp=1, torch_dtype="float32"),
     "F32", 1),
    ("llama3", dict(COMMON, architectures=["LlamaForCausalLM"], model_type="llama",
                    num_key_value_heads=2, head_dim=8, rms_norm_eps=1e-5, rope_theta=500000.0,
                    rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 8},
                    tie_word_embeddings=False, attention_bias=False, mlp_bias=True,
                    pretraining_tp=1, eos_token_id=[2, 3], torch_dtype="bfloat16"),
     "BF16", 2),
    ("qwen2", dict(COMMON, architectures=["Qwen2ForCausalLM"], model_type="qwen2",
                   num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=1000000.0, rope_scaling=None,
                   tie_word_embeddings=True, use_sliding_window=False, sliding_window=4,
                   max_window_layers=2, torch_dtype="float32"),
     "F32", 1),
    ("mistral", dict(COMMON, architectures=["MistralForCausalLM"], model_type="mistral",
                     num_key_value_heads=1, head_dim=12, rms_norm_eps=1e-5, rope_theta=10000.0,
                     sliding_window=4, tie_word_embeddings=False, torch_dtype="float32"),
     "F32", 1),
    ("phi3", dict(COMMON, architectures=["Phi3ForCausalLM"], model_type="phi3",
                  num_key_value_heads=4, rms_norm_eps=1e-5, rope_theta=10000.0, rope_scaling=None,
                  sliding_window=None, original_max_position_embeddings=64, embd_pdrop=0.0,
                  resid_pdrop=0.0, pad_token_id=0, attention_bias=False, tie_word_embeddings=False,
                  torch_dtype="float32"),
     "F32", 1),
]


def check(cond, what):
    if not cond:
        raise SystemExit("self-check FAILED: " + what)


def hf_json(obj):
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"      # PretrainedConfig.to_json_string


def unfused(cfg):
    # Phi-3 without fusion is Mistral-shaped (no biases, its sliding_window honoured).
    return dict(cfg, model_type="mistral") if cfg["model_type"] == "phi3" else cfg


def fuse(cfg, p):
    """Phi-3's layout from separate tensors: qkv_proj rows q, k, v; gate_up_proj rows gate, up."""
    out = dict(p)
    for i in range(cfg["num_hidden_layers"]):
        a, m = "model.layers.%d.self_attn." % i, "model.layers.%d.mlp." % i
        out[a + "qkv_proj.weight"] = torch.cat([out.pop(a + n + "_proj.weight") for n in "qkv"])
        out[m + "gate_up_proj.weight"] = torch.cat([out.pop(m + n + "_proj.weight") for n in ("gate", "up")])
    return {name: out[name] for name in ref.param_shapes(cfg)}


def random_params(cfg, g):
    p = {}
    for name, shape in ref.param_shapes(unfused(cfg)).items():
        x = torch.randn(shape, generator=g, dtype=F64)
        # Norm weights away from 1 so that a missing or misplaced norm weight shows.
        p[name] = 1 + 0.1 * x if name.endswith("norm.weight") else 0.2 * x
    return fuse(cfg, p) if cfg["model_type"] == "phi3" else p


def write_model(d, cfg, p, dtype, shards):
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write(hf_json(cfg))
    if shards == 1:
        ref.write_safetensors(os.path.join(d, "model.safetensors"), p, dtype)
        return
    # save_pretrained cuts shards by size, so a layer may straddle two files: cut inside layer 1.
    names = list(p)
    cut = names.index("model.layers.1.self_attn.o_proj.weight") + 1
    total = sum(p[n].numel() * 2 for n in names)               # BF16 bytes
    files = ["model-0000%d-of-00002.safetensors" % k for k in (1, 2)]
    parts = [names[:cut], names[cut:]]
    weight_map = {}
    for fn, part in zip(files, parts):
        ref.write_safetensors(os.path.join(d, fn), {n: p[n] for n in part}, dtype)
        weight_map.update({n: fn for n in part})
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        f.write(hf_json(index))


def objective(cfg, p, examples, w):
    return (w * ref.score(cfg, p, examples)[1]).sum()


# ----------------------------------------------------------------------------- self-checks

def check_gradients(name, cfg, p, examples, w, grads, g):
    """Central finite differences in float64 at two entries of every tensor."""
    for pname, t in p.items():
        for k in torch.randint(t.numel(), (2,), generator=g).tolist():
            h = 1e-6
            vals = []
            for s in (h, -h):
                q = dict(p)
                q[pname] = t.detach().clone()
                q[pname].view(-1)[k] += s
                vals.append(objective(cfg, q, examples, w).item())
            fd, an = (vals[0] - vals[1]) / (2 * h), grads[pname].view(-1)[k].item()
            check(abs(fd - an) <= 1e-7 * max(1.0, abs(an)),
                  "%s: d/d %s[%d]: finite difference %.12g, autograd %.12g" % (name, pname, k, fd, an))


def check_padding(name, cfg, p, examples, logprobs):
    """Each example scored alone equals its slice of the padded batch."""
    at = 0
    for e in examples:
        alone = ref.score(cfg, p, [e])[1]
        n = len(alone)
        check(torch.allclose(alone, logprobs[at:at + n], rtol=0, atol=1e-12), name + ": padding invariance")
        at += n
    check(at == len(logprobs), name + ": scored count")


def naive_attention(cfg, p, pre, x):
    """Layer `pre`'s attention on one sequence x [T, C], one query, head and key at a time."""
    H, KV, D = cfg["num_attention_heads"], ref.kv_heads(cfg), ref.head_dim(cfg)
    W, inv = ref.sliding_window(cfg), ref.inv_freq(cfg).tolist()
    q, k, v = ref.qkv(cfg, p, pre, x)

    def rot(vec, pos):          # rotate (vec[d], vec[d + D/2]) by pos * inv_freq[d]
        out = vec.clone()
        for d in range(D // 2):
            z = complex(vec[d], vec[d + D // 2]) * cmath.exp(1j * pos * inv[d])
            out[d], out[d + D // 2] = z.real, z.imag
        return out

    T = x.shape[0]
    out = torch.zeros(T, H * D, dtype=F64)
    for h in range(H):
        c = h // (H // KV)      # kv head of query head h
        for i in range(T):
            keys = [j for j in range(i + 1) if W is None or i - j < W]
            qi = rot(q[i, h * D:(h + 1) * D], i)
            s = torch.tensor([float(qi @ rot(k[j, c * D:(c + 1) * D], j)) / math.sqrt(D) for j in keys],
                             dtype=F64)
            a = torch.softmax(s, dim=0)
            out[i, h * D:(h + 1) * D] = sum(a[n] * v[j, c * D:(c + 1) * D] for n, j in enumerate(keys))
    return ref.linear(p, pre + "self_attn.o_proj", out)


def check_attention(name, cfg, p, examples):
    ids, _ = ref.make_batch([max(examples, key=lambda e: len(e["prompt_ids"]) + len(e["answer_ids"]))])
    T = ids.shape[1]
    x = p["model.embed_tokens.weight"][ids]
    cos, sin = ref.rope_tables(cfg, T)
    for i in range(cfg["num_hidden_layers"]):
        pre = "model.layers.%d." % i
        fast = ref.attention(cfg, p, pre, x, cos, sin, ref.causal_mask(cfg, T))[0]
        check(torch.allclose(fast, naive_attention(cfg, p, pre, x[0]), rtol=0, atol=1e-12),
              "%s: %sself_attn equals the loop version" % (name, pre))


def check_features(name, cfg, p, examples, logprobs):
    """Each variant's special feature must change its numbers (else the fixture tests nothing)."""
    def differs(other_cfg):
        return not torch.allclose(ref.score(other_cfg, p, examples)[1], logprobs, rtol=0, atol=1e-6)

    if cfg.get("rope_scaling"):
        check(differs(dict(cfg, rope_scaling=None)), name + ": rope_scaling matters")
    if cfg["model_type"] == "qwen2":
        check(differs(dict(cfg, use_sliding_window=True)), name + ": an honoured window would matter")
        check("lm_head.weight" not in p, name + ": tied, so no lm_head.weight")
    if cfg["model_type"] == "mistral":
        check(differs(dict(cfg, sliding_window=None)), name + ": the sliding window matters")
        check(ref.head_dim(cfg) * cfg["num_attention_heads"] != cfg["hidden_size"], name + ": head_dim")
    for pname, t in p.items():
        check(bool((t != 0).all()), "%s: %s has zeros" % (name, pname))


def check_phi3(name, cfg, p, examples, logprobs):
    """Fused Phi-3 equals the unfused (Mistral-shaped) model on the split rows."""
    H, KV, D, I = cfg["num_attention_heads"], ref.kv_heads(cfg), ref.head_dim(cfg), cfg["intermediate_size"]
    u = {}
    for pname, t in p.items():
        if pname.endswith("qkv_proj.weight"):
            a = pname[:-len("qkv_proj.weight")]
            u[a + "q_proj.weight"], u[a + "k_proj.weight"], u[a + "v_proj.weight"] = \
                t[:H * D], t[H * D:H * D + KV * D], t[H * D + KV * D:]
        elif pname.endswith("gate_up_proj.weight"):
            m = pname[:-len("gate_up_proj.weight")]
            u[m + "gate_proj.weight"], u[m + "up_proj.weight"] = t[:I], t[I:]
        else:
            u[pname] = t
    check(set(u) == set(ref.param_shapes(unfused(cfg))), name + ": unfused names")
    other = ref.score(unfused(cfg), u, examples)[1]
    check(torch.allclose(other, logprobs, rtol=0, atol=1e-12), name + ": fused == unfused")


# ----------------------------------------------------------------------------- main

def make_variant(index, name, cfg, dtype, shards):
    g = torch.Generator().manual_seed(1000 + index)
    d = os.path.join(ROOT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)

    written = random_params(cfg, g)
    write_model(d, cfg, written, dtype, shards)
    V = cfg["vocab_size"]
    examples = [{"prompt_ids": torch.randint(3, V, (P,), generator=g).tolist(),
                 "answer_ids": torch.randint(3, V, (A,), generator=g).tolist()} for P, A in LENGTHS]
    with open(os.path.join(d, "data.jsonl"), "w") as f:
        f.writelines(json.dumps(e) + "\n" for e in examples)

    # Everything below uses the weights as stored (BF16 rounding included), read back as float64.
    cfg2, p = ref.load_model(d)
    check(cfg2 == cfg, name + ": config round trip")
    check(set(p) == set(ref.param_shapes(cfg)), name + ": tensor names")
    for pname, shape in ref.param_shapes(cfg).items():
        check(list(p[pname].shape) == shape, name + ": shape of " + pname)
        check(torch.equal(p[pname], written[pname].to(ref.DTYPES[dtype]).to(F64)), name + ": value of " + pname)

    p = {k: t.requires_grad_(True) for k, t in p.items()}
    logits, logprobs = ref.score(cfg, p, examples)
    N = len(logprobs)
    w = torch.rand(N, generator=g, dtype=F64) * 2 - 1        # signed, so no grad term cancels by luck
    L = (w * logprobs).sum()
    grads = dict(zip(p, torch.autograd.grad(L, list(p.values()))))
    p = {k: t.detach() for k, t in p.items()}
    logits, logprobs = logits.detach(), logprobs.detach()

    check_gradients(name, cfg, p, examples, w, grads, g)
    check_padding(name, cfg, p, examples, logprobs)
    check_attention(name, cfg, p, examples)
    check_features(name, cfg, p, examples, logprobs)
    if cfg["model_type"] == "phi3":
        check_phi3(name, cfg, p, examples, logprobs)
    check(torch.allclose(torch.log_softmax(logits, -1).logsumexp(-1), torch.zeros(N, dtype=F64),
                         rtol=0, atol=1e-12), name + ": logits normalise")

    counts = [A for _, A in LENGTHS]
    seq = torch.stack([s.sum() for s in logprobs.split(counts)])
    expected = {"logprobs": logprobs, "logits": logits, "weights": w, "sequence_logprobs": seq}
    expected.update({"grad." + k: grads[k] for k in p})
    ref.write_safetensors(os.path.join(d, "expected.safetensors"), expected, "F64")
    back = ref.read_safetensors(os.path.join(d, "expected.safetensors"))
    check(all(torch.equal(back[k], v) for k, v in expected.items()), name + ": expected round trip")

    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    print("%-8s N=%2d T=%d  %6d bytes  L=%.6f" % (name, N, max(P + A for P, A in LENGTHS), size, L.item()))


def main():
    torch.set_num_threads(1)                 # reproducible reductions
    for i, (name, cfg, dtype, shards) in enumerate(VARIANTS):
        make_variant(i, name, cfg, dtype, shards)
    print("self-checks passed")


if __name__ == "__main__":
    main()
