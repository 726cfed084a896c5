#!/usr/bin/python3
"""Write tests/fixtures/mia_cases.json: membership-inference references for tests/test_mia.cpp.

Regenerate from the repository root with

    /usr/bin/python3 tests/reference/make_mia_fixture.py

(Debian 12's Python with python3-sklearn 1.2, python3-torch and numpy; the `python3` on PATH may
be another interpreter without them.)

- "auc": sklearn.metrics.roc_auc_score(labels, scores), members labelled 1, on random scores
  drawn from small integer ranges (many ties), from continuous ranges, and separated ones.
- "tokens": random logits [n, V] and targets; per position, in float64 with torch:
  logprob = log_softmax(logits)[target], mean = sum(p * logp), stddev = sqrt(sum(p * logp^2) - mean^2)
  (the Min-K%++ authors' formula), and for k in KS: Min-K% = -mean of the lowest int(n*k)
  log-probabilities (at least one), Min-K%++ the same of (logprob - mean) / stddev.
- "zlib": len(zlib.compress(text.encode("utf-8"))) at the default level.
"""

import json
import math
import os
import zlib

import numpy as np
import sklearn
import torch
from sklearn.metrics import roc_auc_score

KS = [0.05, 0.2, 0.4, 0.5, 1.0]


def auc_cases(rng):
    cases = []
    for m, n, kind in [(1, 1, "int3"), (3, 4, "int3"), (10, 10, "int5"), (25, 17, "int10"), (100, 80, "int20"),
                       (7, 9, "float"), (200, 150, "float"), (400, 400, "int50"), (5, 5, "separated"),
                       (6, 4, "reversed"), (30, 30, "equal"), (3, 60, "int2"), (50, 2, "int2")]:
        if kind == "float":
            a, b = rng.normal(0.3, 1, m), rng.normal(0, 1, n)
        elif kind == "separated":
            a, b = rng.uniform(2, 3, m), rng.uniform(0, 1, n)
        elif kind == "reversed":
            a, b = rng.uniform(0, 1, m), rng.uniform(2, 3, n)
        elif kind == "equal":
            a, b = np.full(m, 1.5), np.full(n, 1.5)
        else:
            top = int(kind[3:])
            a, b = rng.integers(0, top, m).astype(float), rng.integers(0, top, n).astype(float)
        labels = [1] * m + [0] * n
        auc = roc_auc_score(labels, np.concatenate([a, b]))
        cases.append({"name": f"{kind} {m}x{n}", "members": a.tolist(), "nonmembers": b.tolist(), "auc": auc})
    return cases


def token_cases(rng):
    cases = []
    for n, V, scale in [(1, 5, 1.0), (3, 7, 2.0), (10, 50, 3.0), (17, 100, 5.0), (30, 120, 1.0), (8, 4, 20.0)]:
        logits = rng.normal(0, scale, (n, V)).astype(np.float32)
        targets = rng.integers(0, V, n)
        x = torch.tensor(logits, dtype=torch.float64)
        logp = torch.log_softmax(x, dim=-1)
        p = logp.exp()
        mean = (p * logp).sum(-1)
        stddev = ((p * logp.square()).sum(-1) - mean.square()).sqrt()
        token_logp = logp[torch.arange(n), torch.tensor(targets)]
        standardised = (token_logp - mean) / stddev
        min_k, min_k_pp = {}, {}
        for k in KS:
            count = max(1, int(n * k))
            min_k[str(k)] = -float(np.sort(token_logp.numpy())[:count].mean())
            min_k_pp[str(k)] = -float(np.sort(standardised.numpy())[:count].mean())
        cases.append({"logits": logits.tolist(), "targets": targets.tolist(), "logprob": token_logp.tolist(),
                      "mean": mean.tolist(), "stddev": stddev.tolist(), "min_k": min_k, "min_k_plus_plus": min_k_pp})
    return cases


def zlib_cases():
    texts = ["", "a", "Hello, world!", "abcabcabcabcabcabcabcabcabcabc" * 4,
             "Siriporn Nakharin was born on October 25, 1931, in Bangkok, Thailand.",
             "Ünïcödé — text with ✓ marks and 漢字", "0123456789" * 50]
    return [{"text": t, "length": len(zlib.compress(t.encode("utf-8")))} for t in texts]


def main():
    rng = np.random.default_rng(20261128)
    out = {"sklearn_version": sklearn.__version__, "torch_version": torch.__version__,
           "zlib_version": zlib.ZLIB_RUNTIME_VERSION, "ks": KS,
           "auc": auc_cases(rng), "tokens": token_cases(rng), "zlib": zlib_cases()}
    path = os.path.join(os.path.dirname(__file__), "..", "fixtures", "mia_cases.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=None, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
