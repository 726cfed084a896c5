#!/usr/bin/python3
"""simnpo's CUDA backend against eager PyTorch on the same GPU, side by side in one run.

Alternates rounds of build/benchmarks/bench_cuda (Google Benchmark) and benchmarks/torch_gpu_step.py:
one training step of GPT-2 small at B=16, T=1024 (forward, backward of the token-mean NLL, gradient
clipping, AdamW) in fp32, TF32 and BF16 (simnpo's --precision bf16 against PyTorch under BF16 autocast
with its scaled-dot-product attention), and each side's 8192^3 matrix rate in each (BF16: bfloat16
operands). Prints the median over
rounds of each side's median step time, tokens/s, the speed-up (PyTorch time / simnpo time), and the
step's matrix FLOP rate as a fraction of the matrix rate measured in the same run.

Usage:  python3 benchmarks/compare_cuda.py [--build build] [--rounds 2] [--repeats 5] [--json OUT.json]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PRECISIONS = ("fp32", "tf32", "bf16")


def json_lines(command):
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"compare_cuda.py: {' '.join(command)} failed:\n{result.stderr[-2000:]}")
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def simnpo_round(binary, repeats):
    command = [binary, "--benchmark_format=json", f"--benchmark_repetitions={repeats}",
               "--benchmark_report_aggregates_only=true"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"compare_cuda.py: {binary} failed:\n{result.stderr[-2000:]}")
    out = {}
    for entry in json.loads(result.stdout)["benchmarks"]:
        if repeats > 1 and entry.get("aggregate_name") != "median":
            continue
        out[entry["run_name"].replace("/real_time", "")] = entry
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default="build")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="also write every measurement here")
    args = parser.parse_args()
    binary = os.path.join(args.build, "benchmarks", "bench_cuda")
    if not os.path.exists(binary):
        sys.exit(f"compare_cuda.py: {binary} not found: build with CUDA first")
    torch_step = [sys.executable, os.path.join(HERE, "torch_gpu_step.py"), "--device", "cuda",
                  "--repeats", str(args.repeats)]

    ours = {p: [] for p in PRECISIONS}
    our_memory, their_memory = {p: [] for p in PRECISIONS}, {p: [] for p in PRECISIONS}
    theirs = {p: [] for p in PRECISIONS}
    our_rate = {p: [] for p in PRECISIONS}
    their_rate = {p: [] for p in PRECISIONS}
    flops = {}
    rounds = []
    for r in range(args.rounds):
        sim = simnpo_round(binary, args.repeats)
        torch_lines = json_lines(torch_step) + json_lines(torch_step + ["--matmul-rate"])
        rounds.append({"simnpo": sim, "pytorch": torch_lines})
        for p in PRECISIONS:
            s = sim[f"cuda/gpt2_small/step/{p}"]
            ours[p].append(s["real_time"])  # ms
            our_memory[p].append(s["device_used_gib"])
            flops[p] = s["TFLOPs"] * s["real_time"] / 1e3  # TFLOP per step
            our_rate[p].append(sim[f"cuda/matmul_8192/{p}"]["TFLOPs"])
        for line in torch_lines:
            if line.get("metric") == "matmul_tflops":
                their_rate[line["precision"]].append(line["tflops"])
            elif "median_ms" in line:
                theirs[line["precision"]].append(line["median_ms"])
                their_memory[line["precision"]].append(line["peak_mem_gib"])
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)

    tokens = 16 * 1024
    print(f"GPT-2 small training step, B=16 T=1024, median of {args.rounds} rounds x {args.repeats} repeats")
    print(f"{'precision':9} {'simnpo ms':>10} {'torch ms':>10} {'speed-up':>9} {'simnpo tok/s':>13} "
          f"{'torch tok/s':>12} {'TFLOP/s':>8} {'matmul TFLOP/s':>15} {'of rate':>8}")
    summary = {}
    for p in PRECISIONS:
        a, b = statistics.median(ours[p]), statistics.median(theirs[p])
        rate = statistics.median(our_rate[p])
        achieved = flops[p] / (a / 1e3)
        summary[p] = {"simnpo_ms": a, "pytorch_ms": b, "speedup": b / a, "simnpo_tokens_per_s": tokens / (a / 1e3),
                      "pytorch_tokens_per_s": tokens / (b / 1e3), "step_tflops": achieved,
                      "matmul_tflops_simnpo": rate, "matmul_tflops_pytorch": statistics.median(their_rate[p]),
                      "fraction_of_matmul_rate": achieved / rate,
                      "simnpo_device_used_gib": max(our_memory[p]), "pytorch_peak_gib": max(their_memory[p])}
        print(f"{p:9} {a:10.1f} {b:10.1f} {b / a:8.2f}x {tokens / (a / 1e3):13.0f} {tokens / (b / 1e3):12.0f} "
              f"{achieved:8.1f} {rate:15.1f} {achieved / rate:8.2f}")
    print("matmul TFLOP/s is simnpo's cuBLASLt 8192^3 product; PyTorch's torch.mm: " +
          ", ".join(f"{p} {statistics.median(their_rate[p]):.1f}" for p in PRECISIONS))
    print("device memory, GiB (simnpo: in use after the step, cudaMemGetInfo; PyTorch: peak allocated): " +
          ", ".join(f"{p} {max(our_memory[p]):.1f} / {max(their_memory[p]):.1f}" for p in PRECISIONS))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "rounds": rounds}, f, indent=1)


if __name__ == "__main__":
    main()
