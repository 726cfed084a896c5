#!/usr/bin/python3
"""Golden values for simnpo's optimizers from PyTorch: tests/fixtures/optim/reference.json.

Regenerate from the repository root with

    /usr/bin/python3 tests/reference/optim_reference.py

(Debian's Python with torch 1.13.) One parameter vector of 20 values and four steps of fixed
gradients (every number exactly a float32, so both precisions start from the same values) are run
through

  adamw   torch.optim.AdamW(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1), with
          torch.nn.utils.clip_grad_norm_(max_norm=1.0) before each step (the gradient norms are
          about 2, 0.5, 1.5, 0.8: clipped, not, clipped, not) and torch's LambdaLR carrying the
          Hugging Face linear schedule with warmup (warmup 2, total 5: factors 0, 1/2, 1, 2/3);
  sgd     torch.optim.SGD(lr=0.1, momentum=0.9, weight_decay=0.01), constant rate, no clipping;

each in float32 and float64. Element 0's gradient is zero at every step (AdamW moves it by its
decay alone) and parameter 1 starts at zero (decay alone would leave it there).

Layout:
  {"params0": [20], "grads": [4][20],
   "adamw": {"lr", "beta1", "beta2", "eps", "weight_decay", "max_grad_norm", "warmup_steps",
             "total_steps",
             "float32"/"float64": {"lrs": [4] (the rate each step used), "norms": [4] (returned by
                                   clip_grad_norm_), "params"/"exp_avg"/"exp_avg_sq": [4][20]
                                   (after each step)}},
   "sgd":   {"lr", "momentum", "weight_decay",
             "float32"/"float64": {"params"/"momentum_buffer": [4][20]}}}

The script checks torch's trajectories against the textbook formulas in float64 before writing.
"""

import json
import math
import os

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.normpath(os.path.join(HERE, "..", "fixtures", "optim", "reference.json"))

SIZE = 20
GRADIENT_NORMS = [2.0, 0.5, 1.5, 0.8]  # about; clip at 1.0: clipped, not, clipped, not

ADAMW = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1, max_grad_norm=1.0,
             warmup_steps=2, total_steps=5)
SGD = dict(lr=0.1, momentum=0.9, weight_decay=0.01)


def linear_with_warmup(warmup, total):
    """Hugging Face's get_linear_schedule_with_warmup factor, written out."""
    def factor(step):
        if step < warmup:
            return float(step) / float(max(1, warmup))
        return max(0.0, float(total - step) / float(max(1, total - warmup)))
    return factor


def inputs():
    g = torch.Generator().manual_seed(2024)
    params0 = torch.randn(SIZE, generator=g, dtype=torch.float64).float()
    params0[1] = 0.0
    grads = []
    for norm in GRADIENT_NORMS:
        d = torch.randn(SIZE, generator=g, dtype=torch.float64)
        d[0] = 0.0
        grads.append((d * (norm / d.norm())).float())
    return params0, grads


def run_adamw(params0, grads, dtype):
    p = torch.nn.Parameter(params0.to(dtype).clone())
    opt = torch.optim.AdamW([p], lr=ADAMW["lr"], betas=(ADAMW["beta1"], ADAMW["beta2"]),
                            eps=ADAMW["eps"], weight_decay=ADAMW["weight_decay"], amsgrad=False,
                            foreach=False)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, linear_with_warmup(ADAMW["warmup_steps"], ADAMW["total_steps"]))
    out = {"lrs": [], "norms": [], "params": [], "exp_avg": [], "exp_avg_sq": []}
    for g in grads:
        p.grad = g.to(dtype).clone()
        norm = torch.nn.utils.clip_grad_norm_([p], max_norm=ADAMW["max_grad_norm"])
        out["lrs"].append(opt.param_groups[0]["lr"])
        out["norms"].append(float(norm))
        opt.step()
        sched.step()
        state = opt.state[p]
        out["params"].append(p.detach().tolist())
        out["exp_avg"].append(state["exp_avg"].tolist())
        out["exp_avg_sq"].append(state["exp_avg_sq"].tolist())
    return out


def run_sgd(params0, grads, dtype):
    p = torch.nn.Parameter(params0.to(dtype).clone())
    opt = torch.optim.SGD([p], lr=SGD["lr"], momentum=SGD["momentum"],
                          weight_decay=SGD["weight_decay"], foreach=False)
    out = {"params": [], "momentum_buffer": []}
    for g in grads:
        p.grad = g.to(dtype).clone()
        opt.step()
        out["params"].append(p.detach().tolist())
        out["momentum_buffer"].append(opt.state[p]["momentum_buffer"].tolist())
    return out


def check_adamw(params0, grads, got):
    """The same run from the formulas, in float64 (no torch.optim)."""
    theta = params0.double().clone()
    m = torch.zeros_like(theta)
    v = torch.zeros_like(theta)
    factor = linear_with_warmup(ADAMW["warmup_steps"], ADAMW["total_steps"])
    b1, b2 = ADAMW["beta1"], ADAMW["beta2"]
    for step, g in enumerate(grads):
        g = g.double()
        norm = math.sqrt(float((g * g).sum()))
        g = g * min(1.0, ADAMW["max_grad_norm"] / (norm + 1e-6))
        lr = ADAMW["lr"] * factor(step)
        theta = theta * (1 - lr * ADAMW["weight_decay"])
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        t = step + 1
        m_hat = m / (1 - b1 ** t)
        v_hat = v / (1 - b2 ** t)
        theta = theta - lr * m_hat / (v_hat.sqrt() + ADAMW["eps"])
        assert abs(got["norms"][step] - norm) < 1e-12, (step, norm)
        assert abs(got["lrs"][step] - lr) < 1e-15, (step, lr)
        assert torch.allclose(torch.tensor(got["params"][step], dtype=torch.float64), theta,
                              rtol=1e-12, atol=1e-14), step


def check_sgd(params0, grads, got):
    theta = params0.double().clone()
    buf = None
    for step, g in enumerate(grads):
        d = g.double() + SGD["weight_decay"] * theta
        buf = d.clone() if buf is None else SGD["momentum"] * buf + d
        theta = theta - SGD["lr"] * buf
        assert torch.allclose(torch.tensor(got["params"][step], dtype=torch.float64), theta,
                              rtol=1e-12, atol=1e-14), step


def main():
    torch.set_num_threads(1)
    params0, grads = inputs()
    adamw = dict(ADAMW)
    sgd = dict(SGD)
    for name, dtype in (("float32", torch.float32), ("float64", torch.float64)):
        adamw[name] = run_adamw(params0, grads, dtype)
        sgd[name] = run_sgd(params0, grads, dtype)
    check_adamw(params0, grads, adamw["float64"])
    check_sgd(params0, grads, sgd["float64"])
    norms = adamw["float64"]["norms"]
    assert norms[0] > 1 and norms[1] < 1 and norms[2] > 1 and norms[3] < 1, norms

    doc = {"params0": params0.tolist(), "grads": [g.tolist() for g in grads], "adamw": adamw,
           "sgd": sgd}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    print("wrote", OUT)


if __name__ == "__main__":
    main()
