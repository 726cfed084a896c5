#!/usr/bin/env python3
"""Medians over several markov_study runs (one per seed) of what its table shows.

usage: compare_seeds.py RUN_DIR... (each holding a results.json)

Per scenario and method: the forget1 and forget2 KL at the method's best
evaluated step within the retain budget (the lowest mean forget KL with KL retain
<= the run's retain_budget), and the forget gradient a forget2 row got per
forget1 row's (geometric mean over steps 1-10), each as the median over the runs followed by the runs' own values.
The rules are the C++ table's (examples/markov_study/report.hpp).
"""
import json
import math
import statistics
import sys


def best_within(run, budget):
    candidates = [i for i in range(1, len(run["step"])) if run["kl_retain"][i] <= budget]
    if not candidates:
        return None
    return min(candidates, key=lambda i: run["kl_forget1"][i] + run["kl_forget2"][i])


def forget2_per_forget1(allocation, steps=10):
    logs = []
    for k in range(min(steps, len(allocation["forget1_rows"]))):
        n1, n2 = allocation["forget1_rows"][k], allocation["forget2_rows"][k]
        if n1 and n2:
            logs.append(math.log((allocation["forget2_gradient"][k] / n2) / (allocation["forget1_gradient"][k] / n1)))
    return math.exp(sum(logs) / len(logs)) if logs else None


def summary(values):
    shown = " ".join("-" if v is None else f"{v:.3f}" for v in values)
    present = [v for v in values if v is not None]
    median = f"{statistics.median(present):.3f}" if present else "-"
    return f"{median:>6} ({shown})"


def main(paths):
    if not paths:
        sys.exit(__doc__)
    results = []
    for path in paths:
        with open(f"{path}/results.json") as f:
            results.append(json.load(f))
    seeds = [r["settings"]["data"]["seed"] for r in results]
    print(f"seeds {seeds}; median (each run's value)")
    for scenario in (k for k in results[0] if k != "settings"):
        print(f"\n{scenario}")
        print(f"  {'method':<11} {'KL forget1':<30} {'KL forget2':<30} {'f2/f1 gradient, steps 1-10'}")
        for method in results[0][scenario]["methods"]:
            f1, f2, share = [], [], []
            for r in results:
                run = r[scenario]["methods"][method]
                i = best_within(run, r["settings"]["unlearning"]["retain_budget"])
                f1.append(None if i is None else run["kl_forget1"][i])
                f2.append(None if i is None else run["kl_forget2"][i])
                share.append(forget2_per_forget1(run["allocation"]))
            print(f"  {method:<11} {summary(f1):<30} {summary(f2):<30} {summary(share)}")


if __name__ == "__main__":
    main(sys.argv[1:])
