#!/usr/bin/python3
"""Time one unlearning step in eager PyTorch (float32, CPU), for comparison with simnpo's
bench_objective/unlearn_step: SimNPO (beta 2.5, gamma 0) on a forget batch + token-mean NLL on a
retain batch, backward, clip_grad_norm_(1.0), AdamW (lr 1e-5, weight decay 0.01).

GPT-2 small (L=12, C=768, H=12, V=50257), B = 4 forget + 4 retain rows of T = 64 scored tokens each;
the model is the reference GPT-2 of tests/reference/gpt2_reference.py. Two ways of running the two
batches are timed and the faster reported, so that PyTorch is compared at its best: two forward
passes (as simnpo does), or one forward over the 8 rows concatenated. Prints JSON lines:
  {"case": "unlearn_step", "median_ms", "min_ms", "repeats", "threads", "batches": "separate"|"concatenated"}
and with --peak-memory {"case": "unlearn_step", "metric": "peak_rss", "peak_rss_mib"}.

Usage:  /usr/bin/python3 benchmarks/torch_unlearn_step.py [--threads 2] [--repeats 5] [--warmup 1] [--peak-memory]
"""

import argparse
import json
import os
import resource
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_gpt2  # noqa: E402  (sets the thread environment before torch loads)
import torch  # noqa: E402

ref = torch_gpt2.ref
BETA, GAMMA = 2.5, 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--peak-memory", action="store_true")
    ap.add_argument("--autocast", action="store_true", help="the forward under BF16 autocast")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)

    cfg = ref.GPT2Config(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12)
    model = ref.init_random(ref.GPT2(cfg, torch.float32), seed=0,
                            weight_std=0.02, embed_std=0.02, bias_std=0.02, ln_std=0.02)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01)
    g = torch.Generator().manual_seed(1)
    T, B = 64, 4
    forget = torch.randint(0, cfg.vocab_size, (B, T + 1), generator=g)
    retain = torch.randint(0, cfg.vocab_size, (B, T + 1), generator=g)
    both = torch.cat([forget, retain])

    def token_logprobs(seq):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.autocast):
            logits = model(seq[:, :-1].contiguous())
        return torch.log_softmax(logits.float(), dim=-1).gather(2, seq[:, 1:].unsqueeze(2)).squeeze(2)

    def objective(forget_lp, retain_lp):
        per_token = forget_lp.sum(dim=1) / forget_lp.shape[1]
        simnpo = (-2.0 / BETA) * torch.nn.functional.logsigmoid(-BETA * per_token - GAMMA).mean()
        return simnpo - retain_lp.mean()

    def step(concatenated):
        if concatenated:
            lp = token_logprobs(both)
            loss = objective(lp[:B], lp[B:])
        else:
            loss = objective(token_logprobs(forget), token_logprobs(retain))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    results = []
    for concatenated in (False, True):
        median, low = torch_gpt2.time_it(lambda: step(concatenated), args.warmup, args.repeats)
        results.append({"case": "unlearn_step", "median_ms": round(median, 3), "min_ms": round(low, 3),
                        "repeats": args.repeats, "threads": args.threads,
                        "batches": "concatenated" if concatenated else "separate"})
    print(json.dumps(min(results, key=lambda r: r["median_ms"])), flush=True)
    if args.peak_memory:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"case": "unlearn_step", "metric": "peak_rss", "peak_rss_mib": round(kib / 1024.0, 1)}),
              flush=True)


if __name__ == "__main__":
    main()
