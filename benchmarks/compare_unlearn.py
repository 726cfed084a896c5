#!/usr/bin/python3
"""One unlearning step, simnpo against PyTorch, side by side in the same run.

Alternates rounds of build/benchmarks/bench_objective --benchmark_filter=unlearn_step and
benchmarks/torch_unlearn_step.py: SimNPO + NLL on GPT-2 small, B = 4 forget + 4 retain, T = 64,
clipping at 1.0, AdamW; the same thread count; in fp32, and in BF16 mixed precision (simnpo's
--precision bf16 against PyTorch's forward under BF16 autocast). Prints the median over rounds of each
side's median step time, the speed-up (PyTorch time / simnpo time) and each side's peak resident memory.

Usage:  /usr/bin/python3 benchmarks/compare_unlearn.py [--build build] [--threads 2] [--rounds 3] [--repeats 5]
Needs Debian's python3-torch and a Release build (scripts/setup.sh).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default="build")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    binary = os.path.join(args.build, "benchmarks", "bench_objective")
    if not os.path.exists(binary):
        sys.exit(f"compare_unlearn.py: {binary} not found: build first (scripts/setup.sh)")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    for precision in ("fp32", "bf16"):
        compare(args, binary, env, precision)


def compare(args, binary, env, precision):
    ours, theirs, our_rss, their_rss, layouts = [], [], [], [], []
    for round_index in range(args.rounds):
        print(f"round {round_index + 1}/{args.rounds}", file=sys.stderr)
        command = [binary, "--benchmark_format=json", f"--benchmark_filter=^unlearn_step/bf16:{int(precision == 'bf16')}/",
                   f"--benchmark_repetitions={args.repeats}", "--benchmark_min_time=0"]
        output = json.loads(subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout)
        runs = [b for b in output["benchmarks"] if b.get("run_type") == "iteration"]
        ours.append(statistics.median(b["real_time"] for b in runs))
        our_rss.append(max(b["peak_rss_mib"] for b in runs))
        torch_command = [sys.executable, os.path.join(HERE, "torch_unlearn_step.py"), "--threads", str(args.threads),
                         "--repeats", str(args.repeats), "--peak-memory"] + (["--autocast"] if precision == "bf16" else [])
        lines = [json.loads(line) for line in subprocess.run(torch_command, env=env, check=True, capture_output=True,
                                                               text=True).stdout.splitlines() if line.startswith("{")]
        timing = [line for line in lines if "median_ms" in line][0]
        theirs.append(timing["median_ms"])
        layouts.append(timing["batches"])
        their_rss.append([line for line in lines if line.get("metric") == "peak_rss"][0]["peak_rss_mib"])
        print(f"  simnpo {ours[-1]:.1f} ms, PyTorch {theirs[-1]:.1f} ms", file=sys.stderr)

    mine, other = statistics.median(ours), statistics.median(theirs)
    print(f"unlearning step, GPT-2 small, SimNPO+NLL, AdamW, B=4+4, T=64, {precision}, {args.threads} threads")
    print(f"  simnpo  {mine:8.1f} ms   peak RSS {max(our_rss):6.0f} MiB")
    print(f"  PyTorch {other:8.1f} ms   peak RSS {max(their_rss):6.0f} MiB   (faster batch layout: "
          f"{', '.join(sorted(set(layouts)))})")
    print(f"  speed-up {other / mine:.2f}x (rounds {args.rounds}, repeats {args.repeats}; medians)")


if __name__ == "__main__":
    main()
