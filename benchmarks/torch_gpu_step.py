#!/usr/bin/python3
"""Time one full GPT-2 training step in eager PyTorch on an NVIDIA GPU, for comparison with
simnpo's CUDA implementation.

The model is the reference GPT-2 of tests/reference/gpt2_reference.py (attention is batched
matmul + masked_fill + softmax; no torch.compile, no scaled_dot_product_attention), float32
parameters. Default: GPT-2 small (L=12, C=768, H=12, V=50257, P=1024), B=16 rows of T=1024
random tokens, every position scored. One step:
  zero_grad(set_to_none=True); loss = -(log_softmax(logits).gather(targets)).mean();
  loss.backward(); clip_grad_norm_(params, 1.0); AdamW(lr 1e-4, weight decay 0.01).step()
Precision "fp32" disables TF32 for matmuls, "tf32" enables it, "bf16" runs the forward and the loss
under torch.autocast(dtype=torch.bfloat16) with PyTorch's own attention
(F.scaled_dot_product_attention, causal), as the issue's BF16 peer. Each step is timed on its own,
bracketed by torch.cuda.synchronize(). Prints one JSON object per precision:
  {"impl": "pytorch", "precision", "median_ms", "min_ms", "tokens_per_s", "repeats", "B", "T",
   "torch", "device", "adamw": "foreach"|"fused"|"default", "peak_mem_gib" (cuda only), "loss"}
("default" = PyTorch's per-tensor loop; "loss" = the last timed step's loss, a sanity check).
With --matmul-rate, only the rate of a square torch.mm (n=8192 on cuda, 2048 on cpu; float32 operands,
bfloat16 for "bf16"):
  {"impl": "pytorch", "metric": "matmul_tflops", "precision", "n", "tflops"}

Usage:  python3 benchmarks/torch_gpu_step.py [--device cuda] [--precision fp32 --precision tf32 --precision bf16]
                         [--repeats 10] [--warmup 3] [--fused] [--matmul-rate]
  tiny CPU check: /usr/bin/python3 benchmarks/torch_gpu_step.py --device cpu --layers 2 --embd 64
                         --heads 4 --vocab 500 --seq 32 --batch 2 --repeats 3 --warmup 1
"""

import argparse
import inspect
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
import gpt2_reference as ref  # noqa: E402

N_POSITIONS = 1024


def set_precision(precision):
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    if hasattr(torch, "set_float32_matmul_precision"):  # torch >= 1.12
        torch.set_float32_matmul_precision("high" if tf32 else "highest")


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def time_samples(fn, device, warmup, repeats):
    """Milliseconds of each of `repeats` calls of fn, after `warmup` untimed calls; the device
    is synchronized around every call so that only that call's kernels are counted."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def default_adamw_kind(params):
    """What AdamW without foreach/fused resolves to: torch >= 2.0 picks foreach for CUDA
    params (a private helper says so); torch 1.13 always uses the per-tensor loop."""
    try:
        from torch.optim.optimizer import _default_to_fused_or_foreach
        _, foreach = _default_to_fused_or_foreach(params, False, False)
        return "foreach" if foreach else "default"
    except Exception:  # private API: any change just means "unknown", reported as default
        return "default"


def make_optimizer(params, fused):
    kw = dict(lr=1e-4, weight_decay=0.01)
    if fused:
        if "fused" in inspect.signature(torch.optim.AdamW.__init__).parameters:
            try:
                return torch.optim.AdamW(params, fused=True, **kw), "fused"
            except (RuntimeError, ValueError) as e:  # e.g. fused AdamW on CPU in older torch
                print("fused AdamW unavailable (%s); using the default" % e, file=sys.stderr)
        else:
            print("this torch's AdamW has no fused=; using the default", file=sys.stderr)
    return torch.optim.AdamW(params, **kw), default_adamw_kind(params)


def device_name(device):
    return torch.cuda.get_device_name() if device == "cuda" else "cpu"


def sdpa_attention(attn):
    """The reference block's attention through F.scaled_dot_product_attention (the same function)."""
    def forward(x, causal_mask):
        B, T, C = x.shape
        H, D = attn.n_head, attn.head_dim
        q, k, v = (t.view(B, T, H, D).transpose(1, 2) for t in attn.c_attn(x).split(C, dim=2))
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return attn.c_proj(y.transpose(1, 2).reshape(B, T, C))
    return forward


def run_step(args, precision):
    set_precision(precision)
    dev = torch.device(args.device)
    cfg = ref.GPT2Config(vocab_size=args.vocab, n_positions=N_POSITIONS, n_embd=args.embd,
                         n_layer=args.layers, n_head=args.heads)
    # Initialised on the CPU (init_random copies from a CPU generator), then moved; .to() also
    # moves the causal-mask buffer.
    model = ref.init_random(ref.GPT2(cfg, torch.float32), seed=0,
                            weight_std=0.02, embed_std=0.02, bias_std=0.02, ln_std=0.02).to(dev)
    bf16 = precision == "bf16"
    if bf16:
        for block in model.h:
            block.attn.forward = sdpa_attention(block.attn)
    params = list(model.parameters())
    optimizer, adamw = make_optimizer(params, args.fused)
    g = torch.Generator().manual_seed(1)
    B, T = args.batch, args.seq
    seq = torch.randint(0, cfg.vocab_size, (B, T + 1), generator=g)
    input_ids, targets = seq[:, :T].contiguous().to(dev), seq[:, 1:].contiguous().to(dev)
    last = {}

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_ids)
            loss = -torch.log_softmax(logits, dim=-1).gather(2, targets.unsqueeze(2)).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        last["loss"] = loss.detach()  # no .item() here: it would add a sync inside the step

    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = time_samples(step, args.device, args.warmup, args.repeats)
    med = statistics.median(times)
    out = {"impl": "pytorch", "precision": precision, "median_ms": round(med, 3),
           "min_ms": round(min(times), 3), "tokens_per_s": round(B * T / (med / 1e3), 1),
           "repeats": args.repeats, "B": B, "T": T, "torch": torch.__version__,
           "device": device_name(args.device), "adamw": adamw}
    if args.device == "cuda":
        out["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    out["loss"] = round(float(last["loss"]), 6)
    print(json.dumps(out), flush=True)
    # Free this precision's model, optimizer state and activations before the next one.
    del model, params, optimizer, step, last
    if args.device == "cuda":
        torch.cuda.empty_cache()


def run_matmul(args, precision):
    set_precision(precision)
    n = 8192 if args.device == "cuda" else 2048
    g = torch.Generator().manual_seed(2)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32  # bf16: bfloat16 operands
    a = torch.randn(n, n, generator=g).to(args.device, dtype)
    b = torch.randn(n, n, generator=g).to(args.device, dtype)
    # Several mms per sample on the GPU, so launch and sync overhead stay small next to the work.
    inner = 10 if args.device == "cuda" else 1

    def mms():
        for _ in range(inner):
            torch.mm(a, b)

    med = statistics.median(time_samples(mms, args.device, args.warmup, args.repeats)) / inner
    print(json.dumps({"impl": "pytorch", "metric": "matmul_tflops", "precision": precision, "n": n,
                      "tflops": round(2.0 * n ** 3 / (med / 1e3) / 1e12, 3),
                      "device": device_name(args.device), "torch": torch.__version__}), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--embd", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--precision", action="append", choices=["fp32", "tf32", "bf16"],
                    help="repeatable; default: fp32 then tf32")
    ap.add_argument("--fused", action="store_true", help="AdamW(fused=True) where this torch has it")
    ap.add_argument("--matmul-rate", action="store_true",
                    help="only measure a square torch.mm's TFLOP/s (no training step)")
    args = ap.parse_args()
    if args.repeats < 1 or args.warmup < 0:
        ap.error("--repeats must be >= 1 and --warmup >= 0")
    if not 1 <= args.seq <= N_POSITIONS:
        ap.error("--seq must be in [1, %d]" % N_POSITIONS)
    if args.embd % args.heads != 0:
        ap.error("--embd must be a multiple of --heads")
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda requested but torch.cuda.is_available() is False "
                 "(torch %s); use --device cpu" % torch.__version__)
    for precision in args.precision or ["fp32", "tf32", "bf16"]:
        (run_matmul if args.matmul_rate else run_step)(args, precision)


if __name__ == "__main__":
    main()
