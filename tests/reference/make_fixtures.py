#!/usr/bin/python3
"""Write simnpo's golden-parity fixtures into tests/fixtures/, deterministically (fixed seeds).

Regenerate from the repository root with

    /usr/bin/python3 tests/reference/make_fixtures.py

(Debian's Python with torch 1.13; no `transformers`/`safetensors` packages are used.) The model is
the independent reference in tests/reference/gpt2_reference.py. Every number in a *.json / *.jsonl
file below is computed in float64 from exactly the values stored in the safetensors file next to it
(read back and cast up), so a C++ run in double can compare at ~1e-10.

What it makes:

  gpt_tiny/        V=37, P=16, C=16, L=2, H=4, eps=1e-5
    config.json        the six GPT2Config keys
    model.safetensors  F32, no prefix, no lm_head, no mask buffers (the layout simnpo writes)
    reference.json     {"config", "B", "T", "N", "V", "examples": [{"prompt_ids","answer_ids"}] (3),
                        "token_weights" [N], "scored_positions" [N] (flat b*T+t, row-major),
                        "logits" [N*V] (row-major [N,V] at the scored positions),
                        "token_logprobs" [N], "sequence_logprobs" [B],
                        "objective" = sum_n token_weights[n]*token_logprobs[n],
                        "grads": {parameter name: flat row-major list} = d objective / d parameter}

  gpt_hf/          V=64, P=32, C=32, L=2, H=4: a Hugging-Face-layout GPT-2 checkpoint
    config.json        GPT2Config with the extra keys a real checkpoint carries
    model.safetensors  F32, `transformer.` prefix, `lm_head.weight` (= wte), old-GPT-2 buffers
                       `transformer.h.{i}.attn.bias` [1,1,P,P] and `transformer.h.{i}.attn.masked_bias` []
    data.jsonl         5 examples {"prompt_ids": [...], "answer_ids": [...]} (one reaches n_positions)
    expected_logprobs.jsonl  one line per example: {"logprob": sum of answer-token log-probs,
                       "n_tokens": len(answer)}

  gpt_hf_bf16/     the same model stored in BF16 (round to nearest even), with the same layout as
                   gpt_hf (prefix, lm_head, buffers, all BF16); expected_logprobs.jsonl from the
                   rounded weights; data.jsonl copied
  gpt_hf_f16/      the same model stored in F16, plain layout (no prefix, no lm_head, no buffers);
                   expected_logprobs.jsonl from the rounded weights; data.jsonl copied

At the end the script re-reads every safetensors file with its own strict reader, compares it with
what was meant to be written, checks the reference model against a naive loop implementation and
its gradients against finite differences, and checks batched against one-example log-probs.
"""

import json
import math
import os
import shutil
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gpt2_reference as ref  # noqa: E402

FIXTURES = os.path.normpath(os.path.join(HERE, "..", "fixtures"))


# --------------------------------------------------------------------------------------------

def _num(x):
    """A float64 as a JSON number (shortest repr that round-trips)."""
    x = float(x)
    if not math.isfinite(x):
        raise ValueError("non-finite value in a fixture")
    return x


def _flat(t):
    return [_num(v) for v in t.detach().reshape(-1).tolist()]


def _dump(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
        f.write("\n")


def _dump_jsonl(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r, separators=(", ", ": ")) + "\n")


def _rand_ids(g, n, V):
    return torch.randint(0, V, (n,), generator=g).tolist()


def _double_model_from_file(directory):
    return ref.load_model(directory, dtype=torch.float64)


# --------------------------------------------------------------------------------------------
# (1) gpt_tiny
# --------------------------------------------------------------------------------------------

TINY = ref.GPT2Config(vocab_size=37, n_positions=16, n_embd=16, n_layer=2, n_head=4, layer_norm_epsilon=1e-5)


def make_tiny():
    out = os.path.join(FIXTURES, "gpt_tiny")
    os.makedirs(out, exist_ok=True)
    cfg = TINY
    model = ref.init_random(ref.GPT2(cfg, torch.float32), seed=1234)
    _dump(os.path.join(out, "config.json"), cfg.to_dict())
    written = ref.checkpoint_tensors(model)
    ref.write_safetensors(os.path.join(out, "model.safetensors"), written, "F32")

    # examples: total lengths 5, 16 (= n_positions), 8; prompt of length 1 exercises "score from t=0"
    g = torch.Generator().manual_seed(99)
    V = cfg.vocab_size
    examples = [
        (_rand_ids(g, 1, V), _rand_ids(g, 4, V)),
        (_rand_ids(g, 7, V), _rand_ids(g, 9, V)),
        (_rand_ids(g, 5, V), _rand_ids(g, 3, V)),
    ]
    # make sure token 0 (also the padding token) and the last id V-1 occur as real tokens
    examples[1][1][2] = 0
    examples[2][0][1] = 0
    examples[1][0][3] = V - 1
    examples[2][1][0] = V - 1

    m64 = _double_model_from_file(out)
    batch = ref.build_batch(examples)
    pos = ref.scored_positions(batch)
    N = int(pos.numel())
    weights = (torch.rand(N, generator=g, dtype=torch.float64) * 2.0 - 1.0)
    weights = torch.tensor([float("%.6f" % w) for w in weights.tolist()], dtype=torch.float64)

    logits = ref.scored_logits(m64, batch)
    tok = ref.token_logprobs_from_logits(logits, batch)
    seq = ref.sequence_logprobs_from_tokens(tok, batch)
    objective = (weights * tok).sum()
    m64.zero_grad()
    objective.backward()
    grads = {name: _flat(p.grad) for name, p in m64.named_parameters()}

    doc = {
        "config": cfg.to_dict(),
        "B": batch.B,
        "T": batch.T,
        "N": N,
        "V": cfg.vocab_size,
        "examples": [{"prompt_ids": p, "answer_ids": a} for p, a in examples],
        "token_weights": _flat(weights),
        "scored_positions": [int(i) for i in pos.tolist()],
        "logits": _flat(logits),
        "token_logprobs": _flat(tok),
        "sequence_logprobs": _flat(seq),
        "objective": _num(objective),
        "grads": grads,
    }
    _dump(os.path.join(out, "reference.json"), doc)
    return out, model, written, examples, weights


# --------------------------------------------------------------------------------------------
# (2), (3) gpt_hf, gpt_hf_bf16, gpt_hf_f16
# --------------------------------------------------------------------------------------------

HF = ref.GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=4, layer_norm_epsilon=1e-5)


def hf_config_json(cfg, torch_dtype):
    return {
        "_name_or_path": "simnpo-test-gpt2",
        "activation_function": "gelu_new",
        "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": 0.1,
        "bos_token_id": cfg.vocab_size - 1,
        "embd_pdrop": 0.1,
        "eos_token_id": cfg.vocab_size - 1,
        "initializer_range": 0.02,
        "layer_norm_epsilon": cfg.layer_norm_epsilon,
        "model_type": "gpt2",
        "n_ctx": cfg.n_positions,
        "n_embd": cfg.n_embd,
        "n_head": cfg.n_head,
        "n_inner": None,
        "n_layer": cfg.n_layer,
        "n_positions": cfg.n_positions,
        "reorder_and_upcast_attn": False,
        "resid_pdrop": 0.1,
        "scale_attn_by_inverse_layer_idx": False,
        "scale_attn_weights": True,
        "summary_activation": None,
        "summary_first_dropout": 0.1,
        "summary_proj_to_labels": True,
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}},
        "torch_dtype": torch_dtype,
        "transformers_version": "4.36.2",
        "use_cache": True,
        "vocab_size": cfg.vocab_size,
    }


def expected_logprobs(directory, examples):
    m64 = _double_model_from_file(directory)
    batch = ref.build_batch(examples)
    with torch.no_grad():
        seq = ref.sequence_logprobs(m64, batch)
    return [{"logprob": _num(s), "n_tokens": len(a)} for s, (_, a) in zip(seq.tolist(), examples)]


def make_hf():
    cfg = HF
    model = ref.init_random(ref.GPT2(cfg, torch.float32), seed=4321)
    g = torch.Generator().manual_seed(2024)
    V, P = cfg.vocab_size, cfg.n_positions
    lens = [(3, 5), (10, 12), (1, 7), (20, 12), (6, 1)]  # (20, 12): total 32 = n_positions
    examples = [(_rand_ids(g, p, V), _rand_ids(g, a, V)) for p, a in lens]
    assert max(len(p) + len(a) for p, a in examples) == P

    dirs = {}
    variants = [
        ("gpt_hf", "F32", "float32", dict(prefix="transformer.", lm_head=True, attn_buffers=True)),
        ("gpt_hf_bf16", "BF16", "bfloat16", dict(prefix="transformer.", lm_head=True, attn_buffers=True)),
        ("gpt_hf_f16", "F16", "float16", dict(prefix="", lm_head=False, attn_buffers=False)),
    ]
    data_src = None
    for name, st_dtype, torch_dtype, layout in variants:
        out = os.path.join(FIXTURES, name)
        os.makedirs(out, exist_ok=True)
        _dump(os.path.join(out, "config.json"), hf_config_json(cfg, torch_dtype))
        tensors = ref.checkpoint_tensors(model, **layout)
        ref.write_safetensors(os.path.join(out, "model.safetensors"), tensors, st_dtype,
                              metadata={"format": "pt"})
        data = os.path.join(out, "data.jsonl")
        if data_src is None:
            _dump_jsonl(data, [{"prompt_ids": p, "answer_ids": a} for p, a in examples])
            data_src = data
        else:
            shutil.copyfile(data_src, data)
        _dump_jsonl(os.path.join(out, "expected_logprobs.jsonl"), expected_logprobs(out, examples))
        dirs[name] = (out, st_dtype, tensors)
    return dirs, model, examples


# --------------------------------------------------------------------------------------------
# Self-checks
# --------------------------------------------------------------------------------------------

def naive_logits(params, cfg, seq):
    """Logits [len(seq), V] of one unpadded sequence by explicit loops (independent of the
    batched model: own LayerNorm, own GELU formula, per-head per-position attention)."""
    C, H = cfg.n_embd, cfg.n_head
    D = C // H
    eps = cfg.layer_norm_epsilon

    def ln(x, w, b):
        mu = x.mean()
        var = ((x - mu) ** 2).mean()
        return (x - mu) / torch.sqrt(var + eps) * w + b

    def gelu(x):
        return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))

    xs = [params["wte.weight"][tok] + params["wpe.weight"][t] for t, tok in enumerate(seq)]
    for i in range(cfg.n_layer):
        p = lambda n: params["h.%d.%s" % (i, n)]  # noqa: E731
        hs = [ln(x, p("ln_1.weight"), p("ln_1.bias")) for x in xs]
        qkv = [h @ p("attn.c_attn.weight") + p("attn.c_attn.bias") for h in hs]
        new = []
        for t in range(len(xs)):
            heads = []
            for hd in range(H):
                q = qkv[t][hd * D:(hd + 1) * D]
                sc = torch.stack([torch.dot(q, qkv[s][C + hd * D:C + (hd + 1) * D]) / math.sqrt(D)
                                  for s in range(t + 1)])
                a = torch.exp(sc - sc.max())
                a = a / a.sum()
                heads.append(sum(a[s] * qkv[s][2 * C + hd * D:2 * C + (hd + 1) * D] for s in range(t + 1)))
            y = torch.cat(heads) @ p("attn.c_proj.weight") + p("attn.c_proj.bias")
            new.append(xs[t] + y)
        xs = new
        xs = [x + gelu(ln(x, p("ln_2.weight"), p("ln_2.bias")) @ p("mlp.c_fc.weight") + p("mlp.c_fc.bias"))
              @ p("mlp.c_proj.weight") + p("mlp.c_proj.bias") for x in xs]
    xs = [ln(x, params["ln_f.weight"], params["ln_f.bias"]) for x in xs]
    return torch.stack([x @ params["wte.weight"].t() for x in xs])


def check(cond, what):
    if not cond:
        raise SystemExit("self-check FAILED: " + what)


def round_trip(path, st_dtype, tensors):
    got, _, dtypes = ref.read_safetensors(path)
    check(list(got) == list(tensors), path + ": tensor names/order")
    tdtype = ref._DTYPES[st_dtype][0]
    for name, t in tensors.items():
        check(dtypes[name] == st_dtype, "%s: %s dtype" % (path, name))
        check(tuple(got[name].shape) == tuple(t.shape), "%s: %s shape" % (path, name))
        check(torch.equal(got[name], t.to(tdtype)), "%s: %s values" % (path, name))
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
    check(n % 8 == 0, path + ": header length not a multiple of 8")
    return got


def self_check(tiny, hf):
    out, model, written, examples, weights = tiny
    round_trip(os.path.join(out, "model.safetensors"), "F32", written)
    doc = json.load(open(os.path.join(out, "reference.json")))
    m64 = _double_model_from_file(out)
    params = m64.params()
    batch = ref.build_batch(examples)

    # batch semantics
    for b, (p, a) in enumerate(examples):
        s = p + a
        rows = [t for t in range(batch.T) if batch.scored[b, t]]
        check(rows == list(range(len(p) - 1, len(s) - 1)), "scored positions of row %d" % b)
        check([int(batch.targets[b, t]) for t in rows] == a, "targets of row %d" % b)
        check(all(int(batch.input_ids[b, t]) == 0 for t in range(len(s) - 1, batch.T)), "padding of row %d" % b)
    check(doc["T"] == max(len(p) + len(a) for p, a in examples) - 1, "T")
    check(len(doc["token_logprobs"]) == sum(len(a) for _, a in examples), "N")

    # the batched model against the naive loop implementation, one example at a time
    with torch.no_grad():
        full = m64(batch.input_ids)
        for b, (p, a) in enumerate(examples):
            s = (p + a)[:-1]
            nv = naive_logits(params, TINY, s)
            err = (nv - full[b, :len(s)]).abs().max().item()
            check(err < 1e-11, "naive vs batched logits, row %d: %g" % (b, err))
        ls = torch.tensor(doc["logits"], dtype=torch.float64).view(-1, TINY.vocab_size)
        check(torch.allclose(ls, ref.scored_logits(m64, batch), rtol=0, atol=1e-14), "logits in json")
        seq = torch.tensor(doc["sequence_logprobs"], dtype=torch.float64)
        tok = torch.tensor(doc["token_logprobs"], dtype=torch.float64)
        check(abs(seq.sum().item() - tok.sum().item()) < 1e-11, "sequence = sum of tokens")
        check(abs(doc["objective"] - (torch.tensor(doc["token_weights"], dtype=torch.float64) * tok).sum().item())
              < 1e-11, "objective")
        # padding does not matter: each example alone gives the same log-probs
        for b, ex in enumerate(examples):
            alone = ref.sequence_logprobs(m64, ref.build_batch([ex]))[0].item()
            check(abs(alone - doc["sequence_logprobs"][b]) < 1e-11, "padding independence, row %d" % b)

    # gradients against central finite differences, a few entries of every parameter
    g = torch.Generator().manual_seed(7)
    w = torch.tensor(doc["token_weights"], dtype=torch.float64)

    def objective():
        return (w * ref.token_logprobs(m64, batch)).sum().item()

    worst = 0.0
    with torch.no_grad():
        for name, p in params.items():
            flat = p.view(-1)
            for _ in range(3):
                k = int(torch.randint(0, flat.numel(), (1,), generator=g))
                h = 1e-5
                old = flat[k].item()
                flat[k] = old + h
                fp = objective()
                flat[k] = old - h
                fm = objective()
                flat[k] = old
                fd = (fp - fm) / (2 * h)
                an = doc["grads"][name][k]
                err = abs(fd - an) / max(1.0, abs(an))
                worst = max(worst, err)
                check(err < 1e-6, "finite difference %s[%d]: fd %.12g vs autograd %.12g" % (name, k, fd, an))
    check(set(doc["grads"]) == set(ref.parameter_shapes(TINY)), "grads names")
    print("gpt_tiny: N=%d B=%d T=%d objective=%.12g, naive-loop and finite-difference checks ok "
          "(worst fd rel err %.1e)" % (doc["N"], doc["B"], doc["T"], doc["objective"], worst))

    dirs, hf_model, hf_examples = hf
    for name, (out, st_dtype, tensors) in dirs.items():
        got = round_trip(os.path.join(out, "model.safetensors"), st_dtype, tensors)
        if "lm_head.weight" in got:
            check(torch.equal(got["lm_head.weight"], got["transformer.wte.weight"]), name + ": lm_head = wte")
        for k, t in got.items():
            if k.endswith(".attn.bias"):
                P = HF.n_positions
                check(torch.equal(t.float(), torch.ones(P, P).tril().view(1, 1, P, P)), name + ": attn.bias")
        exp = [json.loads(l) for l in open(os.path.join(out, "expected_logprobs.jsonl"))]
        data = [json.loads(l) for l in open(os.path.join(out, "data.jsonl"))]
        check([(d["prompt_ids"], d["answer_ids"]) for d in data] == [(list(p), list(a)) for p, a in hf_examples],
              name + ": data.jsonl")
        m64 = _double_model_from_file(out)
        with torch.no_grad():
            for e, (p, a) in zip(exp, hf_examples):
                lp = ref.sequence_logprobs(m64, ref.build_batch([(p, a)]))[0].item()
                check(abs(lp - e["logprob"]) < 1e-11 and e["n_tokens"] == len(a), name + ": expected logprob")
            s = (hf_examples[1][0] + hf_examples[1][1])[:-1]
            nv = naive_logits(m64.params(), HF, s)
            check((nv - m64(torch.tensor([s]))[0]).abs().max().item() < 1e-11, name + ": naive logits")
        print("%s: %s, %d tensors, logprobs %s" % (name, st_dtype, len(got),
                                                   ["%.6f" % e["logprob"] for e in exp]))
    # the rounded variants really differ from F32 (and are close to it)
    f32 = [json.loads(l)["logprob"] for l in open(os.path.join(dirs["gpt_hf"][0], "expected_logprobs.jsonl"))]
    for name in ("gpt_hf_bf16", "gpt_hf_f16"):
        other = [json.loads(l)["logprob"] for l in open(os.path.join(dirs[name][0], "expected_logprobs.jsonl"))]
        diff = max(abs(x - y) for x, y in zip(f32, other))
        check(0 < diff < 1.0, name + ": rounded logprobs vs F32 (%g)" % diff)
        print("%s: max |logprob - F32 logprob| = %.3g" % (name, diff))


def main():
    torch.manual_seed(0)
    tiny = make_tiny()
    hf = make_hf()
    self_check(tiny, hf)
    for d in ("gpt_tiny", "gpt_hf", "gpt_hf_bf16", "gpt_hf_f16"):
        for f in sorted(os.listdir(os.path.join(FIXTURES, d))):
            p = os.path.join(FIXTURES, d, f)
            size = os.path.getsize(p)
            check(size < 200 * 1024, p + " too large")
            print("  %-40s %7d bytes" % (os.path.relpath(p, FIXTURES), size))
    print("all fixtures written and checked")


if __name__ == "__main__":
    main()
