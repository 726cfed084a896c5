#!/usr/bin/python3
"""simnpo against PyTorch, side by side, on the same machine in the same run.

Alternates rounds of build/benchmarks/bench_gpt (Google Benchmark) and benchmarks/torch_gpt2.py
(eager PyTorch), with the same thread count, in fp32 on both sides and in BF16 mixed precision
(simnpo's --precision bf16 against PyTorch under BF16 autocast), and prints the median over rounds
of each side's median time, the speed-up (PyTorch time / simnpo time), the FLOP rate of GPT-2
small's matrix products as a fraction of oneDNN's rate measured in the same benchmark (sgemm 1024³
for fp32; the same BF16 products called directly for BF16), and the peak resident memory of GPT-2
small's forward+backward on each side.

Usage:  /usr/bin/python3 benchmarks/compare.py [--build build] [--threads 2] [--rounds 3] [--repeats 5]
Needs Debian's python3-torch and a Release build (scripts/setup.sh).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run_json_lines(command, env):
    output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def simnpo_round(binary, env, repeats, pattern):
    command = [binary, "--benchmark_format=json", f"--benchmark_repetitions={repeats}",
               "--benchmark_report_aggregates_only=true", f"--benchmark_filter={pattern}"]
    output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    results = {}
    for entry in json.loads(output)["benchmarks"]:
        if repeats > 1 and entry.get("aggregate_name") != "median":
            continue
        name = entry["run_name"].replace("/real_time", "")
        parts = name.split("/")
        while len(parts) > 1 and parts[-1].isdigit():  # drop the config and precision arguments
            parts.pop()
        name = "/".join(parts)
        results[name] = entry
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default="build")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    binary = os.path.join(args.build, "benchmarks", "bench_gpt")
    if not os.path.exists(binary):
        sys.exit(f"compare.py: {binary} not found: build first (scripts/setup.sh)")
    # Each side with its own best OpenMP wait policy: torch_gpt2.py sets PASSIVE for
    # PyTorch (its OpenMP and OpenBLAS pools share the cores); simnpo has one pool.
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    torch_command = [sys.executable, os.path.join(HERE, "torch_gpt2.py"), "--threads", str(args.threads),
                     "--repeats", str(args.repeats)]

    cases = [f"{config}{suffix}/{phase}" for suffix in ("", "_bf16") for config in ("gpt2_small", "compact")
             for phase in ("forward", "forward_backward")]
    ours = {case: [] for case in cases}
    theirs = {case: [] for case in cases}
    matmul_rate, sgemm_rate, matmul_bf16_rate, bf16_rate = [], [], [], []
    for round_index in range(args.rounds):
        print(f"round {round_index + 1}/{args.rounds}", file=sys.stderr)
        results = simnpo_round(binary, env, args.repeats, ".")
        for case in cases:
            ours[case].append(results[case]["real_time"])
        matmul_rate.append(results["gpt2_small_matmuls"]["flops"])
        sgemm_rate.append(results["sgemm_1024"]["flops"])
        matmul_bf16_rate.append(results["gpt2_small_matmuls_bf16"]["flops"])
        bf16_rate.append(results["bf16_gemm_rate"]["flops"])
        for autocast in ([], ["--autocast"]):
            for line in run_json_lines(torch_command + autocast, env):
                theirs[f"{line['config']}/{line['phase']}"].append(line["median_ms"])

    print(f"{'case':32} {'simnpo ms':>10} {'pytorch ms':>11} {'speed-up':>9}")
    for case in cases:
        mine, other = statistics.median(ours[case]), statistics.median(theirs[case])
        print(f"{case:32} {mine:10.1f} {other:11.1f} {other / mine:8.2f}x")
    matmul, sgemm = statistics.median(matmul_rate), statistics.median(sgemm_rate)
    print(f"GPT-2 small matrix products: {matmul / 1e9:.1f} GFLOP/s = {matmul / sgemm:.0%} of sgemm(1024) "
          f"at {sgemm / 1e9:.1f} GFLOP/s")
    matmul16, rate16 = statistics.median(matmul_bf16_rate), statistics.median(bf16_rate)
    print(f"GPT-2 small matrix products in BF16: {matmul16 / 1e9:.1f} GFLOP/s = {matmul16 / rate16:.0%} of oneDNN's "
          f"BF16 rate at the same products, {rate16 / 1e9:.1f} GFLOP/s")

    for suffix, autocast in (("", []), ("_bf16", ["--autocast"])):
        case = f"gpt2_small{suffix}/forward_backward"
        peak = simnpo_round(binary, env, 1, f"^{case}/")[case]
        torch_peak = [line for line in run_json_lines(torch_command[:-2] + ["--repeats", "1", "--config", "gpt2_small",
                                                                              "--peak-memory"] + autocast, env)
                      if line.get("metric") == "peak_rss"][0]
        print(f"peak RSS, GPT-2 small{suffix} forward+backward: simnpo {peak['peak_rss_mib']:.0f} MiB, "
              f"PyTorch {torch_peak['peak_rss_mib']:.0f} MiB")
    print(f"(threads {args.threads}, rounds {args.rounds}, "
          f"repeats {args.repeats}; medians)")


if __name__ == "__main__":
    main()
