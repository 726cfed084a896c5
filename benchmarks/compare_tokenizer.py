#!/usr/bin/python3
"""Tokenizer encode speed, simnpo against Hugging Face's Rust tokenizers, one thread, same run.

Encodes every question and answer of TOFU's full.jsonl (8000 strings) with the Llama 3.1
tokenizer (../shared/data/hf-tokenizers/llama-3.1/tokenizer.json), no special tokens added, on
each side:

  simnpo        BUILD/benchmarks/bench_tokenizer (benchmarks/bench_tokenizer.cpp):
                simnpo::tokenizer::Tokenizer::load(dir), then tok.encode(text) per string;
  npm encode    benchmarks/tokenizer_npm.js --mode encode: npm tokenizers@0.23.2, one
                `await tok.encode(text, null, {addSpecialTokens: false})` per string (every
                encode in 0.23.2 is asynchronous; one thread works at a time);
  npm batch     benchmarks/tokenizer_npm.js --mode batch: one `encodeBatch` of all the strings
                on one Rayon thread (RAYON_NUM_THREADS=1), the package's fastest single-thread way.

Each side loads its tokenizer once and encodes all the strings REPETITIONS times in one process;
repetition 0 is the cold one (empty caches) and is reported apart, the rest give the process's
warm median. The script runs the three processes one at a time, in alternating order, for ROUNDS
rounds, every one with OMP_NUM_THREADS=1, RAYON_NUM_THREADS=1 and UV_THREADPOOL_SIZE=1; checks
that all of them report the same number of strings, total ids and checksum (sum of ids); and
prints, per side, the median over rounds of the warm medians and of the cold times, the rate, the
CPU time per wall second (about 1 for one thread), and the ratio npm time / simnpo time (above 1:
simnpo is faster). The target is simnpo at least as fast as the faster npm mode.

Usage:  /usr/bin/python3 benchmarks/compare_tokenizer.py [--build build] [--npm build-hftok/npm/node_modules]
            [--rounds 5] [--repetitions 5] [--data ../shared/data/tofu/full.jsonl]
            [--tokenizer ../shared/data/hf-tokenizers/llama-3.1] [--npm-only]
Needs node and the pinned npm package (from the repository root):
  mkdir -p build-hftok/npm && cp tests/reference/hf_tokenizers/package*.json build-hftok/npm/
  npm ci --prefix build-hftok/npm
and a Release build with bench_tokenizer (cmake -DCMAKE_BUILD_TYPE=Release -DSIMNPO_BUILD_BENCHMARKS=ON
... && cmake --build BUILD --target bench_tokenizer); --npm-only runs the npm side alone.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def find_bench(build):
    for sub in ("benchmarks", "bin", "."):
        path = os.path.join(build, sub, "bench_tokenizer")
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    sys.exit(f"compare_tokenizer: no bench_tokenizer under {build}/benchmarks, {build}/bin or {build} "
             "(build it: cmake --build BUILD --target bench_tokenizer)")


def run(cmd, env):
    proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.exit(f"compare_tokenizer: {' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    reps = [line for line in lines if line.get("mode") != "load"]
    load = [line["seconds"] for line in lines if line.get("mode") == "load"]
    if not reps:
        sys.exit(f"compare_tokenizer: {' '.join(cmd)} printed no repetitions:\n{proc.stdout}")
    return load[0] if load else None, reps


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(REPO, "build"), help="build folder with bench_tokenizer")
    ap.add_argument("--npm", default=os.path.join(REPO, "build-hftok", "npm", "node_modules"),
                    help="node_modules folder holding tokenizers@0.23.2")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repetitions", type=int, default=5, help="encodes of all the strings per process")
    ap.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "tofu", "full.jsonl"))
    ap.add_argument("--tokenizer", default=os.path.join(REPO, "..", "shared", "data", "hf-tokenizers", "llama-3.1"),
                    help="folder with tokenizer.json")
    ap.add_argument("--npm-only", action="store_true", help="run the npm side only")
    args = ap.parse_args()
    if args.rounds < 1 or args.repetitions < 1:
        ap.error("--rounds and --repetitions must be at least 1")
    data = os.path.abspath(args.data)
    tokenizer_dir = os.path.abspath(args.tokenizer)
    npm = os.path.abspath(args.npm)
    if not os.path.isfile(os.path.join(npm, "tokenizers", "package.json")):
        sys.exit(f"compare_tokenizer: no tokenizers package in {npm} (see --help)")

    env = dict(os.environ, OMP_NUM_THREADS="1", RAYON_NUM_THREADS="1", UV_THREADPOOL_SIZE="1", NODE_PATH=npm)
    env.pop("TOKENIZERS_PARALLELISM", None)
    npm_script = os.path.join(HERE, "tokenizer_npm.js")
    sides = {}
    if not args.npm_only:
        sides["simnpo"] = [find_bench(os.path.abspath(args.build)), data, str(args.repetitions),
                           "--tokenizer", tokenizer_dir]
    for mode in ("encode", "batch"):
        sides[f"npm {mode}"] = ["node", npm_script, data, str(args.repetitions), "--mode", mode,
                                "--tokenizer", os.path.join(tokenizer_dir, "tokenizer.json")]

    warm = {name: [] for name in sides}
    cold = {name: [] for name in sides}
    cpu = {name: [] for name in sides}
    loads = {name: [] for name in sides}
    work = None  # (strings, ids, checksum) that every process must report
    names = list(sides)
    for r in range(args.rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            load, reps = run(sides[name], env)
            for rep in reps:
                got = (rep["strings"], rep["ids"], rep["checksum"])
                if work is None:
                    work = got
                elif got != work:
                    sys.exit(f"compare_tokenizer: {name} reports strings/ids/checksum {got}, "
                             f"another run reported {work}: the two sides did not do the same work")
            seconds = [rep["seconds"] for rep in reps]
            cold[name].append(seconds[0])
            warm[name].append(statistics.median(seconds[1:] if len(seconds) > 1 else seconds))
            cpu[name].append(statistics.median(rep["cpu_seconds"] / rep["seconds"] for rep in reps if rep["seconds"] > 0))
            if load is not None:
                loads[name].append(load)
            print(f"round {r + 1}/{args.rounds} {name:10s} cold {seconds[0]:.4f} s, warm median {warm[name][-1]:.4f} s",
                  file=sys.stderr, flush=True)

    strings, ids, checksum = work
    text_bytes = 0
    with open(data, "rb") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                text_bytes += len(row["question"].encode()) + len(row["answer"].encode())
    print(f"{strings} strings ({text_bytes / 1e6:.3f} MB of text), {ids} ids, checksum {checksum} (same on every side)")
    print(f"{args.rounds} rounds x {args.repetitions} repetitions; OMP_NUM_THREADS=1 RAYON_NUM_THREADS=1 UV_THREADPOOL_SIZE=1")
    print(f"{'side':12s} {'warm s':>9s} {'cold s':>9s} {'load s':>8s} {'Mtok/s':>8s} {'MB/s':>8s} {'cpu/wall':>8s}")
    med = {}
    for name in names:
        med[name] = statistics.median(warm[name])
        load = f"{statistics.median(loads[name]):8.3f}" if loads[name] else f"{'-':>8s}"
        print(f"{name:12s} {med[name]:9.4f} {statistics.median(cold[name]):9.4f} {load} "
              f"{ids / med[name] / 1e6:8.3f} {text_bytes / med[name] / 1e6:8.2f} {statistics.median(cpu[name]):8.2f}")
    if "simnpo" in med:
        for name in names[1:]:
            print(f"speed-up of simnpo over {name} (its time / simnpo's, warm): {med[name] / med['simnpo']:.3f}"
                  f" (cold: {statistics.median(cold[name]) / statistics.median(cold['simnpo']):.3f})")
        fastest = min(names[1:], key=lambda n: med[n])
        ok = med["simnpo"] <= med[fastest]
        print(f"target (simnpo at least as fast as the faster npm mode, {fastest}): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
