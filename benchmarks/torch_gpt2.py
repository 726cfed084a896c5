#!/usr/bin/python3
"""Time GPT-2 forward and forward+backward in eager PyTorch (float32, CPU), for comparison with
simnpo's C++ benchmarks.

The model is the reference GPT-2 of tests/reference/gpt2_reference.py (its attention is batched
matmul + masked_fill + softmax, as eager PyTorch GPT-2 does; torch 1.13 has no
scaled_dot_product_attention). Every position of every row is scored (no padding); the loss is
the mean of the token log-probabilities (log_softmax + gather).

Configs:
  gpt2_small  L=12, C=768, H=12, V=50257, P=1024, T=64, B=4
  compact     L=4,  C=128, H=4,  V=512,   P=64,   T=64, B=32

With --autocast the forward runs under torch.autocast("cpu", dtype=torch.bfloat16) (PyTorch's
BF16 mixed precision: fp32 weights, BF16 matrix products), and the configs are named
gpt2_small_bf16 and compact_bf16.

Phases: "forward" (under torch.no_grad) and "forward_backward" (model.zero_grad, forward,
loss.backward()), timed with zero_grad(set_to_none=False) and =True, the faster reported. Prints one JSON object per line:
  {"config", "phase", "median_ms", "min_ms", "repeats", "threads"}
and with --peak-memory, right after gpt2_small's forward+backward (run first):
  {"config": "gpt2_small", "metric": "peak_rss", "peak_rss_mib": ...}

Usage:  /usr/bin/python3 benchmarks/torch_gpt2.py [--threads 2] [--repeats 10] [--warmup 2]
                         [--config gpt2_small --config compact] [--peak-memory] [--autocast]
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time


def _early_threads(argv):
    """--threads must reach OpenBLAS/OpenMP before torch loads (Debian's torch uses the system
    pthread OpenBLAS, whose thread count torch.set_num_threads does not control). ATen's OpenMP pool
    and OpenBLAS's pthread pool are two pools on the same cores; OpenMP's default spin-waiting
    then steals the cores from OpenBLAS (measured 3-4x slower on 2 cores), so unless the caller
    chose otherwise, OMP_WAIT_POLICY=PASSIVE."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--threads", type=int, default=2)
    n, _ = pre.parse_known_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(max(1, n.threads))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


_early_threads(sys.argv[1:])
import torch  # noqa: E402


def _require_optimised_blas():
    """Debian's torch does its fp32 products in whatever libblas.so.3 the system's alternatives
    select. With only libblas3 (the reference implementation) installed, a 1024³ product runs at
    about 3.5 GFLOP/s here instead of OpenBLAS's 145: a peer 40x slower than it is would make every
    ratio meaningless, so refuse. scripts/install-deps.sh installs OpenBLAS for this."""
    torch.ones(2, 2) @ torch.ones(2, 2)  # loads the BLAS
    with open("/proc/self/maps") as maps:
        mapped = maps.read()
    if "openblas" not in mapped and "mkl" not in mapped:
        sys.exit("torch_gpt2.py: PyTorch's BLAS is the reference implementation (libblas3), not OpenBLAS: "
                 "install libopenblas0-pthread (scripts/install-deps.sh) before timing PyTorch")


_require_optimised_blas()

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
import gpt2_reference as ref  # noqa: E402

CONFIGS = {
    "gpt2_small": dict(cfg=ref.GPT2Config(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12),
                       T=64, B=4),
    "compact": dict(cfg=ref.GPT2Config(vocab_size=512, n_positions=64, n_embd=128, n_layer=4, n_head=4),
                    T=64, B=32),
}


AUTOCAST = False


def loss_fn(model, input_ids, targets):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=AUTOCAST):
        logits = model(input_ids)
    lp = torch.log_softmax(logits.float(), dim=-1).gather(2, targets.unsqueeze(2)).squeeze(2)
    return lp.mean()


def time_it(fn, warmup, repeats):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times)


def run_config(name, args):
    spec = CONFIGS[name]
    cfg, T, B = spec["cfg"], spec["T"], spec["B"]
    model = ref.init_random(ref.GPT2(cfg, torch.float32), seed=0,
                            weight_std=0.02, embed_std=0.02, bias_std=0.02, ln_std=0.02)
    g = torch.Generator().manual_seed(1)
    seq = torch.randint(0, cfg.vocab_size, (B, T + 1), generator=g)
    input_ids, targets = seq[:, :T].contiguous(), seq[:, 1:].contiguous()

    def forward():
        with torch.no_grad():
            return loss_fn(model, input_ids, targets).item()

    def forward_backward(set_to_none):
        model.zero_grad(set_to_none=set_to_none)
        loss = loss_fn(model, input_ids, targets)
        loss.backward()
        return loss.item()

    # Gradients either zeroed in place and accumulated into, or dropped and written
    # fresh by backward (PyTorch 2's default); both are timed and the faster one
    # reported, so that PyTorch is compared at its best.
    results = []
    med, mn = time_it(forward, args.warmup, args.repeats)
    timings = [("forward", None, med, mn)]
    for set_to_none in (False, True):
        med, mn = time_it(lambda: forward_backward(set_to_none), args.warmup, args.repeats)
        timings.append(("forward_backward", set_to_none, med, mn))
    best_backward = min((t for t in timings if t[0] == "forward_backward"), key=lambda t: t[2])
    for phase, set_to_none, med, mn in (timings[0], best_backward):
        results.append({"config": name + ("_bf16" if AUTOCAST else ""), "phase": phase, "median_ms": round(med, 3), "min_ms": round(mn, 3),
                        "repeats": args.repeats, "threads": args.threads})
        if set_to_none is not None:
            results[-1]["zero_grad_set_to_none"] = set_to_none
        print(json.dumps(results[-1]), flush=True)
    if args.peak_memory and name == "gpt2_small":
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        print(json.dumps({"config": name + ("_bf16" if AUTOCAST else ""), "metric": "peak_rss", "peak_rss_mib": round(kib / 1024.0, 1)}),
              flush=True)
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--config", action="append", choices=sorted(CONFIGS),
                    help="run only this config (repeatable); default: gpt2_small then compact")
    ap.add_argument("--peak-memory", action="store_true",
                    help="report peak RSS after gpt2_small's forward+backward (gpt2_small runs first)")
    ap.add_argument("--autocast", action="store_true", help="BF16 autocast (mixed precision)")
    args = ap.parse_args()
    global AUTOCAST
    AUTOCAST = args.autocast
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    names = args.config or ["gpt2_small", "compact"]
    if args.peak_memory and "gpt2_small" not in names:
        names = ["gpt2_small"] + names
    names = sorted(set(names), key=["gpt2_small", "compact"].index)
    for name in names:
        run_config(name, args)


if __name__ == "__main__":
    main()
