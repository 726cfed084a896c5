#!/usr/bin/python3
"""Write tests/fixtures/ks_2samp_cases.json: scipy.stats.ks_2samp results for tests/test_ks_test.cpp.

Regenerate from the repository root with

    /usr/bin/python3 tests/reference/make_ks_fixture.py

(Debian 12's Python with python3-scipy 1.10 and numpy 1.24; the `python3` on PATH may be another
interpreter without scipy.) Every case is scipy.stats.ks_2samp(a, b) with its defaults
(alternative='two-sided', method='auto'); "exact" records whether SciPy used its exact method: it
does when max(len(a), len(b)) <= 10000 unless the exact value comes out outside [0, 1], which it
announces with a RuntimeWarning ("Exact calculation unsuccessful") before falling back to the
asymptotic distribution. Samples are drawn from a seeded numpy Generator; continuous values are
rounded to 7 significant digits to keep the file small (ties stay rare).

A sample is stored either as a list of numbers or, for the large asymptotic cases, as
{"grid": [start, count, denominator]}: the values i / denominator for i = start .. start+count-1,
one correctly rounded division each, so both sides build identical doubles.

Output: {"scipy_version", "numpy_version",
         "cases": [{"name", "a", "b", "statistic", "pvalue", "exact"}],
         "kstwo_sf": [[n, x, scipy.stats.kstwo.sf(x, n)], ...]}
The kstwo_sf grid covers every branch of the one-sample Kolmogorov distribution that
ks_2samp's asymptotic branch evaluates at n = round(n1*n2/(n1+n2)).
"""

import json
import math
import os
import warnings

import numpy as np
import scipy
from scipy import stats

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(REPO, "tests", "fixtures", "ks_2samp_cases.json")

rng = np.random.default_rng(20240611)
cases = []


def compact(values):
    """Numbers as JSON: integers as ints, others at 7 significant digits."""
    out = []
    for v in np.asarray(values, dtype=float):
        v = float(f"{v:.7g}")
        out.append(int(v) if v.is_integer() and abs(v) < 2**53 else v)
    return out


def grid(start, count, denominator):
    return {"grid": [start, count, denominator]}


def expand(sample):
    if isinstance(sample, dict):
        start, count, denominator = sample["grid"]
        return np.array([i / denominator for i in range(start, start + count)])
    return np.asarray(sample, dtype=float)


def add(name, a, b):
    if not isinstance(a, dict):
        a = compact(a)
    if not isinstance(b, dict):
        b = compact(b)
    x, y = expand(a), expand(b)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = stats.ks_2samp(x, y)
    fell_back = any("Exact calculation unsuccessful" in str(w.message) for w in caught)
    exact = max(len(x), len(y)) <= 10000 and not fell_back
    cases.append({"name": name, "a": a, "b": b, "statistic": float(result.statistic),
                  "pvalue": float(result.pvalue), "exact": exact})


# Hand-sized cases, every pair of sizes from 1 to 4 with continuous draws.
for n1 in range(1, 5):
    for n2 in range(1, 5):
        add(f"small {n1} vs {n2}", rng.normal(size=n1), rng.normal(size=n2))
add("separated 3 vs 7", [1, 2, 3], [10, 11, 12, 13, 14, 15, 16])
add("interleaved 3 vs 7", [1.5, 4.5, 7.5], [1, 2, 3, 4, 5, 6, 7])

# TOFU's sizes (forget01/05/10: 40, 200, 400 truth ratios) against each other: the retain
# model's truth ratios (Beta-like in (0, 1)) against an unlearned model's, shifted by `shift`.
tofu_sizes = [40, 200, 400]
for n1 in tofu_sizes:
    for n2 in tofu_sizes:
        shifts = [0.0, 0.05, 0.2] if n1 == n2 else [0.0, 0.1]
        for shift in shifts:
            a = rng.beta(2.0, 3.0, size=n1)
            b = np.clip(rng.beta(2.0, 3.0, size=n2) + shift, 0.0, 1.0)
            add(f"tofu {n1} vs {n2} shift {shift}", a, b)
add("tofu 400 vs 400 far apart", rng.beta(2, 8, size=400), rng.beta(8, 2, size=400))
add("tofu 40 vs 400 separated", rng.uniform(0, 0.4, size=40), rng.uniform(0.5, 1, size=400))

# Random sizes, log-uniform in [1, 500], continuous samples at a random shift.
for k in range(70):
    n1 = int(round(math.exp(rng.uniform(0, math.log(500)))))
    n2 = int(round(math.exp(rng.uniform(0, math.log(500)))))
    shift = float(rng.choice([0.0, 0.0, 0.1, 0.3, 1.0]))
    add(f"random {n1} vs {n2} shift {shift}", rng.normal(size=n1), rng.normal(loc=shift, size=n2))

# Heavy ties: small integers and coarsely rounded values.
for k in range(25):
    n1 = int(rng.integers(1, 300))
    n2 = int(rng.integers(1, 300))
    levels = int(rng.integers(1, 8))
    add(f"ties integers 0..{levels - 1} {n1} vs {n2}", rng.integers(0, levels, size=n1),
        rng.integers(0, levels, size=n2))
for k in range(15):
    n1 = int(rng.integers(2, 400))
    n2 = int(rng.integers(2, 400))
    add(f"ties rounded {n1} vs {n2}", np.round(rng.normal(size=n1), 1),
        np.round(rng.normal(loc=0.2, size=n2), 1))
add("ties one value each side", [5, 5, 5], [5, 5])
add("ties all equal vs one above", [1] * 50, [1] * 49 + [2])

# Identical samples (D = 0, p = 1) and fully separated ones (D = 1, tiny p).
for n1, n2 in [(1, 1), (7, 7), (40, 40), (200, 200), (13, 13)]:
    a = rng.normal(size=n1)
    add(f"identical {n1}", a, a[::-1].copy())
for n1, n2 in [(1, 1), (1, 2), (2, 1), (5, 5), (40, 40), (40, 400), (400, 40), (200, 400), (500, 500), (3, 500)]:
    add(f"separated {n1} vs {n2}", rng.uniform(0, 1, size=n1), rng.uniform(2, 3, size=n2))
add("separated except one 300 vs 300", np.append(rng.uniform(0, 1, 299), 5.0), rng.uniform(2, 3, 300))

# Equal sizes with a small D, where SciPy's exact sum rounds to just above 1 and it falls
# back to the asymptotic distribution (n = 5, 7, 60, 69 are such sizes for h = 1 or 2).
for n, h in [(5, 1), (7, 1), (30, 1), (60, 2), (69, 2), (400, 1), (400, 3), (1000, 5)]:
    a = np.arange(n, dtype=float)
    b = a.copy()
    b[n - h:] += n + 10.0  # moves h points to the top: D = h/n
    add(f"equal {n} with D = {h}/{n}", a, b)

# Sizes up to SciPy's exact limit, and just past it (the asymptotic branch), built from
# grids i/denominator. N = round(n1*n2/(n1+n2)) picks the Kolmogorov distribution's branch.
add("exact limit 10000 vs 10000", grid(0, 10000, 10000), grid(37, 10000, 10000))
add("exact limit 10000 vs 9999", grid(0, 10000, 10000), grid(150, 9999, 10100))
add("exact limit 10000 vs 3", grid(0, 10000, 10000), [0.2, 0.5, 0.9])
add("asymptotic 10001 vs 3", grid(0, 10001, 10001), [0.2, 0.5, 0.9])
add("asymptotic 10001 vs 7 separated", grid(0, 10001, 10001), [2, 3, 4, 5, 6, 7, 8])
for shift in [0.0, 0.05, 0.1, 0.2, 0.35, 0.6]:
    b = np.sort(rng.uniform(0, 1, size=200)) * (1 - shift) + shift
    add(f"asymptotic 10001 vs 200 shift {shift}", grid(0, 10001, 10001), b)
for scale in [0.995, 0.98, 0.9]:  # stratified: small D (Ruben-Gambino, Durbin, Pelz-Good)
    add(f"asymptotic 10001 vs 200 stratified {scale}", grid(0, 10001, 10001),
        (np.arange(200) + 0.5) / 200 * scale)
for shift in [0.0, 0.1, 0.25, 0.5, 0.7]:  # N = 50: Durbin/Pomeranz region, Smirnov tail
    b = rng.uniform(0, 1, size=50) * (1 - shift) + shift
    add(f"asymptotic 10001 vs 50 shift {shift}", grid(0, 10001, 10001), b)
add("asymptotic 10001 vs 400", grid(0, 10001, 10001), rng.beta(1.2, 1.0, size=400))
add("asymptotic 12000 vs 11000 grids", grid(0, 12000, 12000), grid(300, 11000, 11300))
add("asymptotic 12000 vs 12000 grids", grid(0, 12000, 12000), grid(0, 12000, 12000))
add("asymptotic 20001 vs 15000 shifted", grid(0, 20001, 20001), grid(1000, 15000, 15000))

# The one-sample Kolmogorov distribution Pr(D_n > x) on a grid through all its branches.
kstwo = []
for n in [1, 2, 3, 5, 10, 50, 100, 140, 141, 196, 400, 5455, 100000, 100001, 2000000]:
    root = math.sqrt(n)
    xs = [0.4 / n, 0.75 / n, 1.0 / n, 1.5 / n, 0.3 / root, 0.8 / root, 1.2 / root, 1.8 / root, 2.5 / root,
          4.0 / root, 8.0 / root, 0.3, 0.5, 0.7, 1 - 1.5 / n, 1 - 0.5 / n]
    for x in sorted(set(xs)):
        if 0 < x < 1:
            kstwo.append([n, x, float(stats.kstwo.sf(x, n))])

data = {"scipy_version": scipy.__version__, "numpy_version": np.__version__, "cases": cases,
        "kstwo_sf": kstwo}
with open(OUT, "w") as f:
    json.dump(data, f, separators=(",", ":"))
    f.write("\n")
print(f"{OUT}: {len(cases)} cases ({sum(not c['exact'] for c in cases)} asymptotic), "
      f"{len(kstwo)} kstwo points, {os.path.getsize(OUT)} bytes")
