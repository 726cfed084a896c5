"""Independent float64 reference for simnpo's Llama family: Hugging Face model_type llama, mistral,
qwen2 and phi3, written from the published formulas (not from Hugging Face's code).

    x = embed_tokens[ids]
    per layer:  x += o_proj(attention(rope(q(n)), rope(k(n)), v(n)))    n = input_layernorm(x)
                x += down(silu(gate(n)) * up(n))                        n = post_attention_layernorm(x)
    logits = lm_head(norm(x))      (lm_head = embed_tokens when tie_word_embeddings)

Parameters are a dict {Hugging Face tensor name: float64 tensor}; nn.Linear layout (weight [out, in],
y = x W^T + b). Also a minimal safetensors reader/writer (no `safetensors` package is installed).
"""

import json
import math
import os
import sys

import torch

F64 = torch.float64
DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


# ----------------------------------------------------------------------------- configuration

def head_dim(cfg):
    # An explicit head_dim (Mistral Nemo style) may differ from hidden_size / heads.
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def kv_heads(cfg):
    return cfg.get("num_key_value_heads") or cfg["num_attention_heads"]


def biased(cfg):
    """The projections that carry a bias, by model_type."""
    mt = cfg["model_type"]
    if mt == "qwen2":
        return {"q", "k", "v"}                      # Qwen2: q/k/v biases, none on o_proj
    if mt == "phi3":
        return set()
    out = set()                                     # llama, mistral
    if cfg.get("attention_bias", False):
        out |= {"q", "k", "v", "o"}
    if cfg.get("mlp_bias", False):
        out |= {"gate", "up", "down"}
    return out


def sliding_window(cfg):
    """None, or W: query i sees key j iff i - j < W (besides j <= i)."""
    if cfg["model_type"] == "llama":
        return None
    if cfg["model_type"] == "qwen2" and not cfg.get("use_sliding_window", False):
        return None                                 # Qwen2 keeps sliding_window but ignores it
    return cfg.get("sliding_window")


def tied(cfg):
    # Every one of these config classes defaults to untied.
    return bool(cfg.get("tie_word_embeddings", False))


def param_shapes(cfg):
    """{name: shape} of every parameter tensor the checkpoint holds, in a fixed order."""
    V, C, I = cfg["vocab_size"], cfg["hidden_size"], cfg["intermediate_size"]
    H, KV, D = cfg["num_attention_heads"], kv_heads(cfg), head_dim(cfg)
    b = biased(cfg)
    s = {"model.embed_tokens.weight": [V, C]}

    def lin(name, short, out, inp):
        s[name + ".weight"] = [out, inp]
        if short in b:
            s[name + ".bias"] = [out]

    for i in range(cfg["num_hidden_layers"]):
        pre = "model.layers.%d." % i
        s[pre + "input_layernorm.weight"] = [C]
        if cfg["model_type"] == "phi3":
            s[pre + "self_attn.qkv_proj.weight"] = [(H + 2 * KV) * D, C]
        else:
            lin(pre + "self_attn.q_proj", "q", H * D, C)
            lin(pre + "self_attn.k_proj", "k", KV * D, C)
            lin(pre + "self_attn.v_proj", "v", KV * D, C)
        lin(pre + "self_attn.o_proj", "o", C, H * D)
        s[pre + "post_attention_layernorm.weight"] = [C]
        if cfg["model_type"] == "phi3":
            s[pre + "mlp.gate_up_proj.weight"] = [2 * I, C]
        else:
            lin(pre + "mlp.gate_proj", "gate", I, C)
            lin(pre + "mlp.up_proj", "up", I, C)
        lin(pre + "mlp.down_proj", "down", C, I)
    s["model.norm.weight"] = [C]
    if not tied(cfg):
        s["lm_head.weight"] = [V, C]
    return s


def check_config(cfg):
    assert cfg["model_type"] in ("llama", "mistral", "qwen2", "phi3"), cfg["model_type"]
    assert cfg.get("hidden_act", "silu") == "silu"
    assert cfg["num_attention_heads"] % kv_heads(cfg) == 0
    assert head_dim(cfg) % 2 == 0


# ----------------------------------------------------------------------------- rotary embedding

def inv_freq(cfg):
    """inv_freq_i = 1 / theta^(2i/D), i < D/2, then rope_scaling ("linear" or "llama3")."""
    D = head_dim(cfg)
    theta = float(cfg.get("rope_theta", 10000.0))
    inv = [1.0 / theta ** (2.0 * i / D) for i in range(D // 2)]
    rs = cfg.get("rope_scaling") or {}
    kind = rs.get("rope_type", rs.get("type", "default"))
    if kind == "linear":
        inv = [f / rs["factor"] for f in inv]
    elif kind == "llama3":
        # Llama 3.1: long wavelengths slowed by `factor`, short ones kept, a smooth blend between.
        factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        low_freq_wavelen, high_freq_wavelen = old / lo, old / hi
        out = []
        for f in inv:
            wavelen = 2 * math.pi / f
            if wavelen > low_freq_wavelen:
                out.append(f / factor)
            elif wavelen < high_freq_wavelen:
                out.append(f)
            else:
                smooth = (old / wavelen - lo) / (hi - lo)
                out.append((1 - smooth) * f / factor + smooth * f)
        inv = out
    else:
        assert kind == "default", "unsupported rope_scaling %r" % rs
    return torch.tensor(inv, dtype=F64)


def rope_tables(cfg, T):
    """cos, sin [T, D] of cat(freqs, freqs), freqs = position * inv_freq, positions 0..T-1."""
    freqs = torch.arange(T, dtype=F64)[:, None] * inv_freq(cfg)[None, :]
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x, cos, sin):
    # Hugging Face's convention: dimension d pairs with d + D/2 (not with its neighbour d + 1).
    return x * cos + rotate_half(x) * sin


# ----------------------------------------------------------------------------- the model

def rms_norm(x, w, eps):
    return w * x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps)


def linear(p, name, x):
    y = x @ p[name + ".weight"].T
    if name + ".bias" in p:
        y = y + p[name + ".bias"]
    return y


def silu(x):
    return x * torch.sigmoid(x)


def causal_mask(cfg, T):
    """[T, T] bool, True where query i may see key j. Right padding needs nothing more: a real
    position i < n only sees j <= i < n; padded queries see at least themselves (no NaN rows)."""
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    m = j <= i
    W = sliding_window(cfg)
    if W is not None:
        m = m & (i - j < W)
    return m


def qkv(cfg, p, pre, x):
    H, KV, D = cfg["num_attention_heads"], kv_heads(cfg), head_dim(cfg)
    if cfg["model_type"] == "phi3":
        # Fused rows: H*D of q, then KV*D of k, then KV*D of v.
        y = x @ p[pre + "self_attn.qkv_proj.weight"].T
        return y[..., :H * D], y[..., H * D:(H + KV) * D], y[..., (H + KV) * D:]
    return tuple(linear(p, pre + "self_attn.%s_proj" % n, x) for n in "qkv")


def attention(cfg, p, pre, x, cos, sin, mask):
    B, T, _ = x.shape
    H, KV, D = cfg["num_attention_heads"], kv_heads(cfg), head_dim(cfg)
    q, k, v = qkv(cfg, p, pre, x)
    q = q.reshape(B, T, H, D).transpose(1, 2)               # [B, H, T, D]
    k = k.reshape(B, T, KV, D).transpose(1, 2)              # [B, KV, T, D]
    v = v.reshape(B, T, KV, D).transpose(1, 2)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    # Grouped-query attention: query head h reads kv head h // (H / KV).
    k = k.repeat_interleave(H // KV, dim=1)
    v = v.repeat_interleave(H // KV, dim=1)
    s = (q @ k.transpose(-1, -2)) / math.sqrt(D)
    s = s.masked_fill(~mask, float("-inf"))
    o = torch.softmax(s, dim=-1) @ v                        # [B, H, T, D]
    return linear(p, pre + "self_attn.o_proj", o.transpose(1, 2).reshape(B, T, H * D))


def mlp(cfg, p, pre, x):
    if cfg["model_type"] == "phi3":
        # Fused rows: I of gate, then I of up.
        gate, up = (x @ p[pre + "mlp.gate_up_proj.weight"].T).chunk(2, dim=-1)
    else:
        gate, up = linear(p, pre + "mlp.gate_proj", x), linear(p, pre + "mlp.up_proj", x)
    return linear(p, pre + "mlp.down_proj", silu(gate) * up)


def forward(cfg, p, ids):
    """ids [B, T] (long) -> logits [B, T, V]."""
    check_config(cfg)
    eps = cfg["rms_norm_eps"]
    T = ids.shape[1]
    cos, sin = rope_tables(cfg, T)
    mask = causal_mask(cfg, T)
    x = p["model.embed_tokens.weight"][ids]
    for i in range(cfg["num_hidden_layers"]):
        pre = "model.layers.%d." % i
        x = x + attention(cfg, p, pre, rms_norm(x, p[pre + "input_layernorm.weight"], eps), cos, sin, mask)
        x = x + mlp(cfg, p, pre, rms_norm(x, p[pre + "post_attention_layernorm.weight"], eps))
    x = rms_norm(x, p["model.norm.weight"], eps)
    head = p["model.embed_tokens.weight"] if tied(cfg) else p["lm_head.weight"]
    return x @ head.T


# ----------------------------------------------------------------------------- scoring as simnpo does

def make_batch(examples, pad_id=0):
    """Right-padded batch of prompt + answer rows. Position t predicts token t + 1 and is scored iff
    token t + 1 is an answer token. Returns ids [B, T] and the scored (b, t, target), row-major."""
    rows = [list(e["prompt_ids"]) + list(e["answer_ids"]) for e in examples]
    T = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad_id] * (T - len(r)) for r in rows], dtype=torch.long)
    scored = []
    for b, e in enumerate(examples):
        P, A = len(e["prompt_ids"]), len(e["answer_ids"])
        assert P >= 1 and A >= 1
        scored += [(b, t, rows[b][t + 1]) for t in range(P - 1, P + A - 1)]
    return ids, scored


def score(cfg, p, examples):
    """(logits [N, V], logprobs [N]) at the scored positions, row-major over the padded batch."""
    ids, scored = make_batch(examples)
    b, t, y = (torch.tensor(c, dtype=torch.long) for c in zip(*scored))
    logits = forward(cfg, p, ids)[b, t]
    return logits, torch.log_softmax(logits, dim=-1).gather(1, y[:, None])[:, 0]


# ----------------------------------------------------------------------------- safetensors

def _raw(t, dtype):
    t = t.detach().to(DTYPES[dtype]).contiguous().cpu()
    if dtype == "BF16":                                     # numpy has no bfloat16
        t = t.view(torch.int16)
    assert sys.byteorder == "little"                        # safetensors data is little-endian
    return t.numpy().tobytes()


def write_safetensors(path, tensors, dtype):
    """All tensors in one dtype ("F64", "F32", "F16", "BF16"), in the given order."""
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in tensors.items():
        raw = _raw(t, dtype)
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for raw in blobs:
            f.write(raw)
    return off                                              # data bytes


def read_safetensors(path):
    """{name: tensor in its stored dtype}, strictly: offsets must tile the data exactly."""
    with open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out, spans = {}, []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = DTYPES[info["dtype"]]
        a, b = info["data_offsets"]
        numel = math.prod(info["shape"])
        assert b - a == numel * torch.empty(0, dtype=dt).element_size(), name
        out[name] = torch.frombuffer(bytearray(body[a:b]), dtype=dt).reshape(info["shape"])
        spans.append((a, b))
    spans.sort()
    assert [s[0] for s in spans] == [0] + [s[1] for s in spans[:-1]] and spans[-1][1] == len(body), path
    return out


def load_model(directory):
    """(config, {name: float64 tensor}) from a Hugging Face model directory, sharded or not."""
    with open(os.path.join(directory, "config.json")) as f:
        cfg = json.load(f)
    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        files = sorted(set(weight_map.values()))
    else:
        weight_map, files = None, ["model.safetensors"]
    p = {}
    for fn in files:
        for name, t in read_safetensors(os.path.join(directory, fn)).items():
            assert name not in p and (weight_map is None or weight_map[name] == fn), name
            p[name] = t.to(F64)
    assert weight_map is None or set(weight_map) == set(p)
    return cfg, p
