#!/usr/bin/python3
"""Independent GPT-2 reference in PyTorch, for simnpo's golden-parity tests.

Built only from torch primitives (no `transformers`): token + learned position embeddings,
pre-LayerNorm blocks, causal multi-head attention (scores scaled by 1/sqrt(head_dim), causal
mask by masked_fill, softmax), MLP with 4*C hidden units and tanh-approximated GELU, final
LayerNorm, LM head tied to the token embedding.

Parameter names are exactly those of DESIGN.md section 4 (`wte.weight` [V,C], `wpe.weight` [P,C],
`h.{i}.ln_1.weight`, `h.{i}.attn.c_attn.weight` [C,3C], ...); Conv1D weights are stored
[in, out] so that y = x @ W + b.

Also here:
  * `init_random(model, seed, ...)`  - a deterministic test initialisation (large, nonzero values);
  * `write_safetensors` / `read_safetensors` - the safetensors format by hand (F32, F16, BF16);
  * `checkpoint_tensors` - the tensors of a checkpoint with optional `transformer.` prefix,
    `lm_head.weight` and old-GPT-2 causal-mask buffers (`h.{i}.attn.bias`, `h.{i}.attn.masked_bias`);
  * `build_batch` - the batch semantics of the C++ library (see its docstring);
  * `scored_logits`, `token_logprobs`, `sequence_logprobs`.

Use Debian's Python: /usr/bin/python3 (torch 1.13).
"""

import json
import math
import struct
from collections import OrderedDict
from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------

@dataclass
class GPT2Config:
    vocab_size: int
    n_positions: int
    n_embd: int
    n_layer: int
    n_head: int
    layer_norm_epsilon: float = 1e-5

    def __post_init__(self):
        if self.n_embd % self.n_head != 0:
            raise ValueError("n_embd must be a multiple of n_head")

    def to_dict(self):
        return asdict(self)

    @staticmethod
    def from_dict(d):
        return GPT2Config(
            vocab_size=int(d["vocab_size"]),
            n_positions=int(d["n_positions"]),
            n_embd=int(d["n_embd"]),
            n_layer=int(d["n_layer"]),
            n_head=int(d["n_head"]),
            layer_norm_epsilon=float(d.get("layer_norm_epsilon", 1e-5)),
        )


def parameter_shapes(cfg):
    """Ordered {name: shape} of every parameter, in the order of DESIGN.md section 4."""
    V, P, C = cfg.vocab_size, cfg.n_positions, cfg.n_embd
    shapes = OrderedDict()
    shapes["wte.weight"] = (V, C)
    shapes["wpe.weight"] = (P, C)
    for i in range(cfg.n_layer):
        p = "h.%d." % i
        shapes[p + "ln_1.weight"] = (C,)
        shapes[p + "ln_1.bias"] = (C,)
        shapes[p + "attn.c_attn.weight"] = (C, 3 * C)
        shapes[p + "attn.c_attn.bias"] = (3 * C,)
        shapes[p + "attn.c_proj.weight"] = (C, C)
        shapes[p + "attn.c_proj.bias"] = (C,)
        shapes[p + "ln_2.weight"] = (C,)
        shapes[p + "ln_2.bias"] = (C,)
        shapes[p + "mlp.c_fc.weight"] = (C, 4 * C)
        shapes[p + "mlp.c_fc.bias"] = (4 * C,)
        shapes[p + "mlp.c_proj.weight"] = (4 * C, C)
        shapes[p + "mlp.c_proj.bias"] = (C,)
    shapes["ln_f.weight"] = (C,)
    shapes["ln_f.bias"] = (C,)
    return shapes


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------

class Embedding(nn.Module):
    def __init__(self, n, d, dtype):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n, d, dtype=dtype))


class LayerNorm(nn.Module):
    def __init__(self, d, eps, dtype):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(d, dtype=dtype))

    def forward(self, x):
        return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)


class Conv1D(nn.Module):
    """y = x @ W + b with W stored [in, out] (GPT-2's Conv1D)."""

    def __init__(self, n_in, n_out, dtype):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_in, n_out, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(n_out, dtype=dtype))

    def forward(self, x):
        shape = x.shape[:-1] + (self.weight.shape[1],)
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(shape)


class Attention(nn.Module):
    def __init__(self, cfg, dtype):
        super().__init__()
        self.n_head = cfg.n_head
        self.head_dim = cfg.n_embd // cfg.n_head
        self.c_attn = Conv1D(cfg.n_embd, 3 * cfg.n_embd, dtype)
        self.c_proj = Conv1D(cfg.n_embd, cfg.n_embd, dtype)

    def forward(self, x, causal_mask):
        B, T, C = x.shape
        H, D = self.n_head, self.head_dim
        qkv = self.c_attn(x)
        q, k, v = qkv.split(C, dim=2)
        q = q.view(B, T, H, D).transpose(1, 2)  # [B,H,T,D]
        k = k.view(B, T, H, D).transpose(1, 2)
        v = v.view(B, T, H, D).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(D))  # [B,H,T,T]
        # causal_mask[t, s] is True where key s is in the future of query t.
        scores = scores.masked_fill(causal_mask[:T, :T], float("-inf"))
        att = torch.softmax(scores, dim=-1)
        y = torch.matmul(att, v)  # [B,H,T,D]
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, cfg, dtype):
        super().__init__()
        self.c_fc = Conv1D(cfg.n_embd, 4 * cfg.n_embd, dtype)
        self.c_proj = Conv1D(4 * cfg.n_embd, cfg.n_embd, dtype)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, cfg, dtype):
        super().__init__()
        self.ln_1 = LayerNorm(cfg.n_embd, cfg.layer_norm_epsilon, dtype)
        self.attn = Attention(cfg, dtype)
        self.ln_2 = LayerNorm(cfg.n_embd, cfg.layer_norm_epsilon, dtype)
        self.mlp = MLP(cfg, dtype)

    def forward(self, x, causal_mask):
        x = x + self.attn(self.ln_1(x), causal_mask)
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT2(nn.Module):
    """GPT-2 whose named_parameters() are exactly DESIGN.md section 4's names."""

    def __init__(self, cfg, dtype=torch.float32):
        super().__init__()
        self.cfg = cfg
        self.wte = Embedding(cfg.vocab_size, cfg.n_embd, dtype)
        self.wpe = Embedding(cfg.n_positions, cfg.n_embd, dtype)
        self.h = nn.ModuleList([Block(cfg, dtype) for _ in range(cfg.n_layer)])
        self.ln_f = LayerNorm(cfg.n_embd, cfg.layer_norm_epsilon, dtype)
        P = cfg.n_positions
        mask = torch.ones(P, P, dtype=torch.bool).triu(diagonal=1)
        self.register_buffer("causal_mask", mask, persistent=False)

    def hidden(self, input_ids):
        B, T = input_ids.shape
        if T > self.cfg.n_positions:
            raise ValueError("sequence of %d positions exceeds n_positions=%d" % (T, self.cfg.n_positions))
        pos = torch.arange(T, device=input_ids.device)
        x = F.embedding(input_ids, self.wte.weight) + F.embedding(pos, self.wpe.weight)[None]
        for block in self.h:
            x = block(x, self.causal_mask)
        return self.ln_f(x)

    def forward(self, input_ids):
        """Logits [B, T, V] (tied LM head: logits = ln_f(x) @ wte^T)."""
        return torch.matmul(self.hidden(input_ids), self.wte.weight.t())

    # -- parameters as a dict ------------------------------------------------------------------
    def params(self):
        return OrderedDict(self.named_parameters())

    def load_tensors(self, tensors):
        """Copy {name: tensor} into the parameters (cast to the model's dtype)."""
        own = self.params()
        for name, shape in parameter_shapes(self.cfg).items():
            if name not in tensors:
                raise KeyError("missing tensor " + name)
            t = tensors[name]
            if tuple(t.shape) != tuple(shape):
                raise ValueError("%s: shape %s, expected %s" % (name, tuple(t.shape), shape))
            with torch.no_grad():
                own[name].copy_(t.to(own[name].dtype))
        return self


def init_random(model, seed, weight_std=0.3, embed_std=0.3, bias_std=0.1, ln_std=0.1):
    """Deterministic test initialisation (NOT GPT-2's): every parameter is drawn, in the order of
    parameter_shapes, from one torch.Generator seeded with `seed`:
      embeddings and Conv1D weights ~ N(0, std); Conv1D biases ~ N(0, bias_std);
      LayerNorm weights ~ 1 + N(0, ln_std); LayerNorm biases ~ N(0, ln_std).
    Values are drawn in float32 (so the result does not depend on the model's dtype)."""
    g = torch.Generator().manual_seed(seed)
    params = model.params()
    with torch.no_grad():
        for name, shape in parameter_shapes(model.cfg).items():
            z = torch.randn(shape, generator=g, dtype=torch.float32)
            leaf = name.split(".")
            if name in ("wte.weight", "wpe.weight"):
                v = z * embed_std
            elif "ln_" in name and leaf[-1] == "weight":
                v = 1.0 + z * ln_std
            elif "ln_" in name and leaf[-1] == "bias":
                v = z * ln_std
            elif leaf[-1] == "weight":
                v = z * weight_std
            else:
                v = z * bias_std
            params[name].copy_(v.to(params[name].dtype))
    return model


# --------------------------------------------------------------------------------------------
# safetensors (by hand)
# --------------------------------------------------------------------------------------------

_DTYPES = {
    "F32": (torch.float32, 4),
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
    "F64": (torch.float64, 8),
}
_INT_VIEW = {torch.float32: torch.int32, torch.float16: torch.int16,
             torch.bfloat16: torch.int16, torch.float64: torch.int64}


def _tensor_bytes(t, dtype_name):
    tdtype, _ = _DTYPES[dtype_name]
    t = t.detach().to(torch.float32 if t.dtype == torch.bool else t.dtype).to(tdtype).contiguous().cpu()
    # view as integers so numpy can hold bf16; numpy's byte order is native (little-endian here)
    arr = t.view(_INT_VIEW[tdtype]).numpy()
    return arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()


def write_safetensors(path, tensors, dtype="F32", metadata=None):
    """Write {name: tensor} (ordered) as a safetensors file, every tensor converted to `dtype`
    (round to nearest even). Header: u64 LE length, JSON, padded with spaces to a multiple of 8."""
    if dtype not in _DTYPES:
        raise ValueError("dtype must be one of %s" % list(_DTYPES))
    header = OrderedDict()
    if metadata is not None:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        b = _tensor_bytes(t, dtype)
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((-len(h)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    """Return (OrderedDict {name: tensor in the stored dtype}, metadata dict or None, dtypes {name: str}).
    Strict: checks header length, offsets contiguous and in range, byte counts vs shape x dtype."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError("%s: too short" % path)
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise ValueError("%s: header length %d out of range" % (path, n))
    header = json.loads(raw[8:8 + n].decode("utf-8"), object_pairs_hook=OrderedDict)
    data = raw[8 + n:]
    metadata = header.pop("__metadata__", None)
    out, dtypes, spans = OrderedDict(), {}, []
    for name, info in header.items():
        tdtype, size = _DTYPES[info["dtype"]]
        shape = [int(s) for s in info["shape"]]
        b, e = info["data_offsets"]
        count = 1
        for s in shape:
            count *= s
        if not (0 <= b <= e <= len(data)) or e - b != count * size:
            raise ValueError("%s: %s bad data_offsets %s" % (path, name, info["data_offsets"]))
        spans.append((b, e))
        ints = torch.frombuffer(bytearray(data[b:e]), dtype=_INT_VIEW[tdtype]) if e > b else \
            torch.zeros(0, dtype=_INT_VIEW[tdtype])
        out[name] = ints.view(tdtype).reshape(shape).clone()
        dtypes[name] = info["dtype"]
    spans.sort()
    pos = 0
    for b, e in spans:
        if b != pos:
            raise ValueError("%s: data not contiguous at %d" % (path, b))
        pos = e
    if pos != len(data):
        raise ValueError("%s: %d trailing bytes" % (path, len(data) - pos))
    return out, metadata, dtypes


def checkpoint_tensors(model, prefix="", lm_head=False, attn_buffers=False):
    """{name: float32 tensor} of a checkpoint. prefix: e.g. "transformer."; lm_head: add
    `lm_head.weight` (= wte, never prefixed); attn_buffers: add old GPT-2's `h.{i}.attn.bias`
    [1,1,P,P] (lower-triangular ones) and `h.{i}.attn.masked_bias` (scalar -1e4)."""
    cfg = model.cfg
    params = model.params()
    out = OrderedDict()
    for name in parameter_shapes(cfg):
        out[prefix + name] = params[name].detach().to(torch.float32).clone()
        if attn_buffers and name.endswith("attn.c_proj.bias"):
            i = name.split(".")[1]
            P = cfg.n_positions
            out[prefix + "h.%s.attn.bias" % i] = torch.ones(P, P).tril().view(1, 1, P, P)
            out[prefix + "h.%s.attn.masked_bias" % i] = torch.tensor(-1e4)
    if lm_head:
        out["lm_head.weight"] = params["wte.weight"].detach().to(torch.float32).clone()
    return out


def strip_checkpoint(tensors):
    """Inverse of checkpoint_tensors: drop the prefix, lm_head and mask buffers."""
    out = OrderedDict()
    for name, t in tensors.items():
        if name.startswith("transformer."):
            name = name[len("transformer."):]
        if name == "lm_head.weight" or name.endswith(".attn.bias") or name.endswith(".attn.masked_bias"):
            continue
        out[name] = t
    return out


def load_model(directory, dtype=torch.float64):
    """Load <directory>/config.json + model.safetensors into a GPT2 of `dtype`."""
    import os
    with open(os.path.join(directory, "config.json")) as f:
        cfg = GPT2Config.from_dict(json.load(f))
    tensors, _, _ = read_safetensors(os.path.join(directory, "model.safetensors"))
    return GPT2(cfg, dtype).load_tensors(strip_checkpoint(tensors))


# --------------------------------------------------------------------------------------------
# Batches and log-probabilities
# --------------------------------------------------------------------------------------------

@dataclass
class Batch:
    input_ids: torch.Tensor   # [B, T] long, right-padded with token 0
    targets: torch.Tensor     # [B, T] long, s[t+1] where defined, else 0
    scored: torch.Tensor      # [B, T] bool
    B: int
    T: int


def build_batch(examples):
    """examples: list of (prompt_ids, answer_ids). The sequence is s = prompt + answer; the model
    reads s[0 : len(s)-1]; position t is scored iff t >= len(prompt)-1 (and t < len(s)-1), and it
    predicts s[t+1], so exactly the answer tokens are scored. Rows are right-padded with token 0
    to the longest row; padding is never scored (and, being to the right under a causal mask,
    never attended to by a real position). Empty prompts or answers are rejected."""
    if not examples:
        raise ValueError("empty batch")
    seqs = []
    for prompt, answer in examples:
        prompt, answer = list(prompt), list(answer)
        if len(prompt) == 0:
            raise ValueError("empty prompt (the first token cannot be predicted)")
        if len(answer) == 0:
            raise ValueError("empty answer")
        seqs.append((prompt, answer))
    B = len(seqs)
    T = max(len(p) + len(a) - 1 for p, a in seqs)
    input_ids = torch.zeros(B, T, dtype=torch.long)
    targets = torch.zeros(B, T, dtype=torch.long)
    scored = torch.zeros(B, T, dtype=torch.bool)
    for b, (p, a) in enumerate(seqs):
        s = p + a
        n = len(s) - 1
        input_ids[b, :n] = torch.tensor(s[:n])
        targets[b, :n] = torch.tensor(s[1:])
        scored[b, len(p) - 1:n] = True
    return Batch(input_ids, targets, scored, B, T)


def scored_positions(batch):
    """Flat indices b*T + t of the scored positions, row-major."""
    return torch.nonzero(batch.scored.reshape(-1), as_tuple=False).reshape(-1)


def scored_logits(model, batch):
    """[N, V] logits at the scored positions (row-major order)."""
    logits = model(batch.input_ids)
    return logits.reshape(batch.B * batch.T, -1)[scored_positions(batch)]


def token_logprobs_from_logits(logits_nv, batch):
    tgt = batch.targets.reshape(-1)[scored_positions(batch)]
    return torch.log_softmax(logits_nv, dim=-1).gather(1, tgt[:, None]).squeeze(1)


def token_logprobs(model, batch):
    """[N] log p(s[t+1] | s[:t+1]) at the scored positions, row-major."""
    return token_logprobs_from_logits(scored_logits(model, batch), batch)


def sequence_logprobs_from_tokens(tok_lp, batch):
    """[B] sum of token log-probs of each row's scored positions."""
    row = scored_positions(batch) // batch.T
    out = torch.zeros(batch.B, dtype=tok_lp.dtype)
    return out.index_add(0, row, tok_lp)


def sequence_logprobs(model, batch):
    return sequence_logprobs_from_tokens(token_logprobs(model, batch), batch)
