#!/usr/bin/python3
"""The Llama family, simnpo against eager PyTorch, side by side on the same machine in the same run.

Alternates rounds of build/benchmarks/bench_llama (Google Benchmark) and benchmarks/torch_llama.py
(eager PyTorch), fp32, the same thread count, each side in its own process and never both at once:

  (a) llama_small: a Llama of GPT-2 small's size (L 12, C 768, 12 heads, 4 KV heads, I 2048,
      V 32000, untied), B 4, T 64, every position scored: forward, and forward+backward of the
      mean token log-probability;
  (b) llama_1b: Llama-3.2-1B's shape (L 16, C 2048, 32 heads, 8 KV heads, I 8192, V 128256, tied,
      rope_theta 500000), random weights: one SimNPO+GD unlearning step (beta 2.5, gamma 0, retain
      NLL token mean) on 2 forget + 2 retain rows of T 128, then AdamW; step time and each
      side's peak RSS (its process's: (b) runs in a process of its own on each side).

Each (a) and (b) runs with OPENBLAS_CORETYPE as set in the environment and with it unset (both
sides use OpenBLAS's sgemm; OPENBLAS_CORETYPE=Haswell on an AVX-512 machine about halves it), and
the script prints, per setting, the median over rounds of each side's median time and the speed-up
(PyTorch time / simnpo time), the peak RSS of (b), and each side's loss on its own random weights
(the two agree to within the spread of random initialisations: about -10.5 = -ln V - 0.15 for
(a), and about 12.2 = ln V + 0.4 for (b), whose SimNPO term is ~0 at initialisation).

Memory: (b) in fp32 holds parameters, gradients and AdamW's two moments, 16 bytes a parameter:
~20 GB for the full 1.24B, more than a 24 GiB machine holds next to PyTorch's overhead. Unless
--llama1b-layers is given, the script keeps the most decoder layers whose estimated peak (the
larger side's) fits in MemAvailable less --reserve-mib, and says so; it checks again before every
(b) process, skips that run when memory has run short, and kills its own child if MemAvailable
falls under --floor-mib while it runs. (b) is skipped when not even one layer fits.

Usage:  /usr/bin/python3 benchmarks/compare_llama.py [--build build] [--threads 2] [--rounds 3]
            [--repeats 5] [--unlearn-repeats 3] [--llama1b-layers auto|N] [--workload a|b|both]
            [--coretype both|env|unset] [--torch-layout separate|concatenated|both]
Needs Debian's python3-torch and a Release build with benchmarks (scripts/setup.sh, or
cmake -DSIMNPO_BUILD_BENCHMARKS=ON ... && cmake --build BUILD --target bench_llama).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MIB = 1 << 20

# Llama-3.2-1B's shape: the tied embedding and one decoder layer, in parameters.
V, C, I, H, KV, D = 128256, 2048, 8192, 32, 8, 64
EMBEDDING = V * C + C  # embed_tokens (tied lm_head) and model.norm
PER_LAYER = C * (H + 2 * KV) * D + C * H * D + 3 * I * C + 2 * C


def llama1b_params(layers):
    return EMBEDDING + layers * PER_LAYER


def estimated_peak_mib(layers):
    """The larger side's peak RSS of (b) at `layers` layers: 16 bytes a parameter (parameters,
    gradients, AdamW's two moments), activations of the 4 x 128 rows, and PyTorch's overhead
    (the lm_head's logits and their log-softmax, the tied embedding's two gradient halves,
    AdamW's per-tensor temporaries). Measured at 1, 2 and 6 layers: simnpo 5738, 6749 and 10790 MiB,
    PyTorch 7644, 8724 and 12990 MiB (~1070 MiB a layer: ~2.5 GiB over 16 bytes a parameter, ~150
    MiB of activations a layer); this estimate stays 0.5 to 1.2 GiB above PyTorch's. The full 16
    layers: simnpo 20890 MiB measured, PyTorch ~23.1 GiB extrapolated (more than a 24 GiB machine
    has available)."""
    return 16 * llama1b_params(layers) / MIB + 224 * layers + 3072


def mem_available_mib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024.0
    return float("inf")


def layers_that_fit(budget_mib, most=16):
    fitting = [n for n in range(1, most + 1) if estimated_peak_mib(n) <= budget_mib]
    return max(fitting) if fitting else 0


def run(command, env, floor_mib=None):
    """stdout of `command`; with floor_mib, kills it (and fails) if MemAvailable falls below that."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:  # no pipe to fill up
        process = subprocess.Popen(command, env=env, stdout=out, stderr=err, text=True)
        while process.poll() is None:
            if floor_mib is not None and mem_available_mib() < floor_mib:
                process.kill()  # our own child, by its handle
                process.wait()
                name = os.path.basename(command[1] if command[0] == sys.executable else command[0])
                raise MemoryError(f"{name} killed: MemAvailable fell below {floor_mib:.0f} MiB")
            time.sleep(0.5 if floor_mib is not None else 0.1)
        out.seek(0)
        err.seek(0)
        if process.returncode != 0:
            sys.stderr.write(err.read())
            raise subprocess.CalledProcessError(process.returncode, command)
        return out.read()


def simnpo_entries(out):
    return json.loads(out)["benchmarks"]


def json_lines(out):
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def median_or_none(values):
    return statistics.median(values) if values else None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default="build")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions of (a) per process")
    parser.add_argument("--unlearn-repeats", type=int, default=3, help="timed steps of (b) per process")
    parser.add_argument("--llama1b-layers", default="auto", help="decoder layers of (b): auto (what fits) or N")
    parser.add_argument("--workload", choices=["a", "b", "both"], default="both")
    parser.add_argument("--coretype", choices=["both", "env", "unset"], default="both",
                        help="OPENBLAS_CORETYPE as set in the environment, unset, or both (default)")
    parser.add_argument("--torch-layout", choices=["separate", "concatenated", "both"], default="both",
                        help="(b)'s batches on the PyTorch side: two forward passes, one, or the faster")
    parser.add_argument("--reserve-mib", type=float, default=1536, help="memory (b) leaves to the machine")
    parser.add_argument("--floor-mib", type=float, default=768,
                        help="kill a (b) process when MemAvailable falls below this")
    args = parser.parse_args()
    if args.rounds < 1 or args.repeats < 1 or args.unlearn_repeats < 1:
        parser.error("--rounds, --repeats and --unlearn-repeats must be >= 1")

    binary = os.path.join(args.build, "benchmarks", "bench_llama")
    if not os.path.exists(binary):
        sys.exit(f"compare_llama.py: {binary} not found: build first "
                 "(cmake --build BUILD --target bench_llama, with -DSIMNPO_BUILD_BENCHMARKS=ON)")
    torch_script = os.path.join(HERE, "torch_llama.py")
    workloads = ["a", "b"] if args.workload == "both" else [args.workload]

    # Each side with its own best OpenMP wait policy: torch_llama.py sets PASSIVE for PyTorch
    # (its OpenMP and OpenBLAS pools share the cores); simnpo has one pool.
    base = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    unset = {k: v for k, v in base.items() if k != "OPENBLAS_CORETYPE"}
    settings = []
    if args.coretype in ("both", "env"):
        settings.append((f"OPENBLAS_CORETYPE={coretype}" if coretype else "OPENBLAS_CORETYPE unset (as in the "
                         "environment)", base))
    if args.coretype in ("both", "unset") and (coretype or args.coretype == "unset"):
        settings.append(("OPENBLAS_CORETYPE unset", unset))
    if args.coretype == "both" and not coretype:
        print("note: OPENBLAS_CORETYPE is not set in this environment: one setting only", file=sys.stderr)

    layers = 0
    if "b" in workloads:
        available = mem_available_mib()
        if args.llama1b_layers == "auto":
            layers = layers_that_fit(available - args.reserve_mib)
            reduced_why = "to fit in memory"
            if layers == 0:
                print(f"(b) skipped: not even one layer fits (MemAvailable {available:.0f} MiB, one layer needs "
                      f"~{estimated_peak_mib(1):.0f} MiB)", file=sys.stderr)
                workloads.remove("b")
            elif layers < 16:
                print(f"(b) reduced to {layers} of Llama-3.2-1B's 16 layers to fit in memory: MemAvailable "
                      f"{available:.0f} MiB, 16 layers need ~{estimated_peak_mib(16):.0f} MiB on the larger side",
                      file=sys.stderr)
        else:
            layers = int(args.llama1b_layers)
            reduced_why = "by --llama1b-layers"
            if not 1 <= layers <= 16:
                parser.error("--llama1b-layers must be auto or one of 1..16")

    cases = []
    if "a" in workloads:
        cases += ["llama_small/forward", "llama_small/forward_backward"]
    if "b" in workloads:
        cases.append("llama_1b/unlearn_step")
    ours = {(s, c): [] for s, _ in settings for c in cases}
    theirs = {(s, c): [] for s, _ in settings for c in cases}
    rss = {(s, side): [] for s, _ in settings for side in ("simnpo", "pytorch")}
    losses = {(s, c, side): [] for s, _ in settings for c in cases for side in ("simnpo", "pytorch")}
    layouts, skipped = set(), []
    load_before = os.getloadavg()

    for round_index in range(args.rounds):
        for label, env in settings:
            print(f"round {round_index + 1}/{args.rounds}, {label}", file=sys.stderr)
            if "a" in workloads:
                out = run([binary, "--benchmark_format=json", f"--threads={args.threads}",
                           "--benchmark_filter=^llama_small/", f"--benchmark_repetitions={args.repeats}",
                           "--benchmark_report_aggregates_only=true"], env)
                for entry in simnpo_entries(out):
                    for case in cases[:2]:
                        if entry["run_name"].startswith(case + "/") and (
                                args.repeats == 1 or entry.get("aggregate_name") == "median"):
                            ours[(label, case)].append(entry["real_time"])
                            losses[(label, case, "simnpo")].append(entry["loss"])
                for line in json_lines(run([sys.executable, torch_script, "--threads", str(args.threads),
                                            "--repeats", str(args.repeats), "--config", "llama_small"], env)):
                    case = f"llama_small/{line['phase']}"
                    theirs[(label, case)].append(line["median_ms"])
                    losses[(label, case, "pytorch")].append(line["loss"])
                print("  (a) simnpo " + ", ".join(f"{ours[(label, c)][-1]:.0f}" for c in cases[:2]) +
                      " ms; PyTorch " + ", ".join(f"{theirs[(label, c)][-1]:.0f}" for c in cases[:2]) + " ms",
                      file=sys.stderr)
            if "b" in workloads:
                case = "llama_1b/unlearn_step"
                commands = {
                    "simnpo": [binary, "--benchmark_format=json", f"--threads={args.threads}",
                               f"--llama1b_layers={layers}", "--benchmark_filter=^llama_1b/",
                               f"--benchmark_repetitions={args.unlearn_repeats}"],
                    "pytorch": [sys.executable, torch_script, "--threads", str(args.threads), "--config", "llama_1b",
                                "--llama1b-layers", str(layers), "--repeats", str(args.unlearn_repeats),
                                "--layout", args.torch_layout, "--peak-memory"],
                }
                for side, command in commands.items():  # one after the other, never at once
                    available = mem_available_mib()
                    if estimated_peak_mib(layers) > available - args.reserve_mib / 2:
                        skipped.append(f"round {round_index + 1}, {label}, {side}: MemAvailable {available:.0f} MiB "
                                       f"< ~{estimated_peak_mib(layers):.0f} MiB needed")
                        print("  (b) skipped: " + skipped[-1], file=sys.stderr)
                        continue
                    try:
                        out = run(command, env, floor_mib=args.floor_mib)
                    except (MemoryError, subprocess.CalledProcessError) as error:  # killed, or it refused
                        skipped.append(f"round {round_index + 1}, {label}, {side}: {error}")
                        print("  (b) " + skipped[-1], file=sys.stderr)
                        continue
                    if side == "simnpo":
                        steps = [e for e in simnpo_entries(out) if e.get("run_type") == "iteration"]
                        errors = [e.get("error_message", "error") for e in steps if e.get("error_occurred")]
                        if errors or not steps:
                            skipped.append(f"round {round_index + 1}, {label}, simnpo: {errors[:1] or 'no result'}")
                            print("  (b) skipped: " + skipped[-1], file=sys.stderr)
                            continue
                        ours[(label, case)].append(statistics.median(e["real_time"] for e in steps))
                        rss[(label, side)].append(max(e["peak_rss_mib"] for e in steps))
                        losses[(label, case, side)].append(steps[0]["first_loss"])
                    else:
                        lines = json_lines(out)
                        timing = [line for line in lines if "median_ms" in line][0]
                        theirs[(label, case)].append(timing["median_ms"])
                        layouts.add(timing["batches"])
                        losses[(label, case, side)].append(timing["first_loss"])
                        rss[(label, side)].append([line for line in lines
                                                   if line.get("metric") == "peak_rss"][0]["peak_rss_mib"])
                    print(f"  (b) {side} {(ours if side == 'simnpo' else theirs)[(label, case)][-1] / 1e3:.1f} s, "
                          f"peak RSS {rss[(label, side)][-1]:.0f} MiB", file=sys.stderr)

    load_after = os.getloadavg()
    for label, _ in settings:
        print(f"\n{label}:")
        print(f"  {'case':36} {'simnpo ms':>10} {'pytorch ms':>11} {'speed-up':>9}")
        for case in cases:
            mine, other = median_or_none(ours[(label, case)]), median_or_none(theirs[(label, case)])
            name = case if case != "llama_1b/unlearn_step" else f"llama_1b[{layers} of 16 layers]/unlearn_step"
            if mine is None or other is None:
                print(f"  {name:36} {'-' if mine is None else f'{mine:.1f}':>10} "
                      f"{'-' if other is None else f'{other:.1f}':>11}   (no pair)")
                continue
            print(f"  {name:36} {mine:10.1f} {other:11.1f} {other / mine:8.2f}x")
        if "b" in workloads:
            mine, other = rss[(label, "simnpo")], rss[(label, "pytorch")]
            print(f"  peak RSS of (b)'s process: simnpo {max(mine) if mine else float('nan'):.0f} MiB, "
                  f"PyTorch {max(other) if other else float('nan'):.0f} MiB")
        for case in cases:
            mine, other = losses[(label, case, "simnpo")], losses[(label, case, "pytorch")]
            if mine and other:
                what = "first step's loss" if case.startswith("llama_1b") else "mean token log-prob"
                print(f"  {case} {what} (each on its own random weights): simnpo {statistics.median(mine):.4f}, "
                      f"PyTorch {statistics.median(other):.4f}")
    if "b" in workloads:
        print(f"\n(b): {layers} of Llama-3.2-1B's 16 decoder layers, {llama1b_params(layers) / 1e9:.3f}B parameters"
              + ("" if layers == 16 else f" (REDUCED {reduced_why}; the full model is {llama1b_params(16) / 1e9:.3f}B)")
              + f"; PyTorch's faster batch layout: {', '.join(sorted(layouts)) or '-'}")
    for line in skipped:
        print(f"skipped: {line}")
    counts = ([f"repeats {args.repeats} for (a)"] if "a" in workloads else []) + \
        ([f"{args.unlearn_repeats} steps for (b)"] if "b" in workloads else [])
    print(f"(threads {args.threads}, rounds {args.rounds}, {', '.join(counts)}; medians; "
          f"1-minute load average {load_before[0]:.1f} before, {load_after[0]:.1f} after)")


if __name__ == "__main__":
    main()
