#!/usr/bin/python3
"""Golden values for the TOFU metrics' arithmetic (tests/test_tofu_eval.cpp).

Given each question's mean answer NLLs n(.) and the ROUGE-L recall of its
greedy answer, computes with NumPy and SciPy, from the TOFU definitions (Maini
et al., 2024, as the issue states them):
  R = exp(mean_j n(perturbed_j) - n(paraphrased))
  probability: forget/retain mean exp(-n(answer)); real authors/world facts
               mean p / (p + sum_j exp(-n(perturbed_j))), p = exp(-n(answer))
  truth ratio: forget mean(min(R, 1/R)); otherwise mean(max(0, 1 - 1/R))
  forget quality: scipy.stats.ks_2samp(R_model, R_retain_model).pvalue
  model utility: scipy.stats.hmean of {retain, real, world} x {prob, ROUGE, truth}
  retain utility: hmean of the three retain numbers
The inputs are random (seeded); on real authors and world facts the paraphrase
is the answer itself.

Run: /usr/bin/python3 tests/reference/make_tofu_metrics_fixture.py
(needs Debian's python3-numpy and python3-scipy); writes
tests/fixtures/tofu_metrics_cases.json.
"""
import json
import pathlib

import numpy as np
import scipy
import scipy.stats

SETS = [("forget", 5, True), ("retain", 5, True), ("real_authors", 3, False), ("world_facts", 3, False)]


def questions(rng, count, perturbations, paraphrased, scale):
    result = []
    for _ in range(count):
        answer = float(rng.uniform(0.02, 3.0) * scale)
        result.append({
            "answer_nll": answer,
            "paraphrased_nll": float(rng.uniform(0.02, 3.0) * scale) if paraphrased else answer,
            "perturbed_nll": [float(x) for x in rng.uniform(0.02, 3.0, perturbations) * scale],
            # Some greedy answers share nothing with the answer.
            "rouge_l_recall": float(rng.choice([0.0, rng.uniform(0.0, 1.0)], p=[0.2, 0.8])),
        })
    return result


def aggregate(name, qs):
    a = np.array([q["answer_nll"] for q in qs])
    para = np.array([q["paraphrased_nll"] for q in qs])
    pert = np.array([q["perturbed_nll"] for q in qs])
    r = np.exp(pert.mean(axis=1) - para)
    p = np.exp(-a)
    if name in ("forget", "retain"):
        probability = p.mean()
    else:
        probability = (p / (p + np.exp(-pert).sum(axis=1))).mean()
    if name == "forget":
        truth = np.minimum(r, 1.0 / r).mean()
    else:
        truth = np.maximum(0.0, 1.0 - 1.0 / r).mean()
    rouge = np.mean([q["rouge_l_recall"] for q in qs])
    return r, {"probability": float(probability), "truth_ratio": float(truth), "rouge_l_recall": float(rouge)}


def case(seed, sizes, scale):
    rng = np.random.default_rng(seed)
    sets, expected, ratios = {}, {}, {}
    for (name, perturbations, paraphrased), count in zip(SETS, sizes):
        sets[name] = questions(rng, count, perturbations, paraphrased, scale)
        ratios[name], expected[name] = aggregate(name, sets[name])
    retain_model_ratios = np.exp(rng.normal(0.0, 0.6, sizes[0]))
    nine = [expected[s][k] for s in ("retain", "real_authors", "world_facts")
            for k in ("probability", "rouge_l_recall", "truth_ratio")]
    return {
        "seed": seed,
        "sets": sets,
        "retain_model_truth_ratios": [float(x) for x in retain_model_ratios],
        "expected": {
            "sets": expected,
            "truth_ratios": {name: [float(x) for x in r] for name, r in ratios.items()},
            "forget_quality": float(scipy.stats.ks_2samp(ratios["forget"], retain_model_ratios).pvalue),
            "model_utility": float(scipy.stats.hmean(nine)),
            "retain_utility": float(scipy.stats.hmean(nine[:3])),
        },
    }


def main():
    cases = [
        case(1, (40, 30, 20, 25), 1.0),
        case(2, (10, 10, 5, 5), 0.3),   # well learned: small NLLs
        case(3, (25, 12, 8, 9), 3.0),   # forgotten: large NLLs
        case(4, (3, 2, 2, 2), 1.0),
    ]
    out = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "tofu_metrics_cases.json"
    out.write_text(json.dumps({"generator": "tests/reference/make_tofu_metrics_fixture.py",
                               "numpy": np.__version__, "scipy": scipy.__version__,
                               "cases": cases}, indent=1) + "\n")


if __name__ == "__main__":
    main()
