#!/usr/bin/python3
"""Independent fp64 PyTorch reference for Hugging Face Llama (LlamaForCausalLM).

The oracle that longctx's loss and gradients are compared against (DESIGN.md
section 6, item 2). Written from the HF semantics, sharing no code with the
engine: RMSNorm, rotate-half RoPE (default, "linear" and "llama3" scaling),
causal GQA softmax attention, SwiGLU MLP, final norm, LM head (optionally
tied to the embedding) and mean cross-entropy over labels != -100.

Module use:
    import llama_ref
    cfg, params, dtypes = llama_ref.load_model(dir)     # fp64 tensors, HF names
    inputs, labels = llama_ref.load_tokens("t.npy", cfg["vocab_size"])
    loss, grads = llama_ref.loss_and_grads(cfg, params, inputs, labels)
    llama_ref.write_random_model(dir, config_dict, seed=0, sharded=True, dtype="BF16")

CLI:
    /usr/bin/python3 tests/reference/llama_ref.py --model DIR --tokens T.npy --out G.safetensors
        prints {"loss": ..., "tokens": ...}; G holds the F64 gradient of every parameter.
    /usr/bin/python3 tests/reference/llama_ref.py --self-test
        checks the reference against a naive loop implementation and finite differences.
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch

IGNORE_INDEX = -100

# ----------------------------------------------------------------------------
# safetensors
# ----------------------------------------------------------------------------

_NP_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"), "I64": np.dtype("<i8"), "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"), "I8": np.dtype("i1"), "U8": np.dtype("u1"),
    "U16": np.dtype("<u2"), "U32": np.dtype("<u4"), "U64": np.dtype("<u8"),
    "BOOL": np.dtype("u1"),
}


class RefError(Exception):
    """An input problem, reported as one line naming the file."""


def bf16_bits_to_f32(bits):
    """uint16 array of bfloat16 bit patterns -> float32 array (exact)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16_bits(x):
    """float32 array -> uint16 bfloat16 bit patterns, round to nearest even."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    nan = np.isnan(x)
    out = rounded.astype(np.uint16)
    out[nan] = 0x7FC0
    return out


def read_safetensors(path):
    """Returns ({name: np.ndarray in its stored dtype (BF16 as float32)}, {name: dtype string}, metadata)."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as e:
        raise RefError(f"{path}: cannot open ({e.strerror})")
    if len(blob) < 8:
        raise RefError(f"{path}: truncated safetensors file")
    (n,) = struct.unpack("<Q", blob[:8])
    if 8 + n > len(blob):
        raise RefError(f"{path}: header length {n} exceeds file size")
    try:
        header = json.loads(blob[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RefError(f"{path}: malformed safetensors header ({e})")
    data = memoryview(blob)[8 + n:]
    metadata = header.pop("__metadata__", {}) or {}
    arrays, dtypes = {}, {}
    for name, info in header.items():
        dt = info["dtype"]
        if dt not in _NP_DTYPES:
            raise RefError(f"{path}: tensor {name} has unsupported dtype {dt}")
        shape = [int(s) for s in info["shape"]]
        b, e = info["data_offsets"]
        npdt = _NP_DTYPES[dt]
        if e - b != int(np.prod(shape, dtype=np.int64)) * npdt.itemsize or e > len(data):
            raise RefError(f"{path}: tensor {name} data_offsets do not match its shape/dtype")
        arr = np.frombuffer(data[b:e], dtype=npdt).reshape(shape)
        if dt == "BF16":
            arr = bf16_bits_to_f32(arr)
        arrays[name] = arr
        dtypes[name] = dt
    return arrays, dtypes, metadata


def write_safetensors(path, tensors, dtype="F32", metadata=None):
    """tensors: {name: array-like}; dtype: one of F64, F32, F16, BF16 (applied to all)."""
    header, chunks, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name]
        a = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
        if dtype == "BF16":
            raw = f32_to_bf16_bits(a.astype(np.float32)).tobytes()
        elif dtype in ("F64", "F32", "F16"):
            raw = np.ascontiguousarray(a, dtype=_NP_DTYPES[dtype]).tobytes()
        else:
            raise ValueError(f"write_safetensors: unsupported dtype {dtype}")
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for c in chunks:
            f.write(c)


# ----------------------------------------------------------------------------
# config
# ----------------------------------------------------------------------------

MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")


def normalize_config(raw, source="config.json"):
    """HF config dict -> dict with every field the model needs, defaults applied.

    Per family, as transformers 5's configuration and modeling code reads them:
    llama: attention_bias (q, k, v, o), mlp_bias (gate, up, down); qwen2: q, k, v biases always, o none,
    sliding window only with use_sliding_window on layers >= max_window_layers (or as layer_types says);
    qwen3: attention_bias (q, k, v, o), q_norm/k_norm (RMSNorm over each head before RoPE), head_dim
    default 128, windows as qwen2; mistral: no biases, sliding_window on every layer when set (absent: 4096).
    """
    def need(key):
        if key not in raw:
            raise RefError(f"{source}: missing required field {key}")
        return raw[key]

    c = {}
    mt = raw.get("model_type", "llama")
    if mt not in MODEL_TYPES:
        raise RefError(f"{source}: model_type {mt} not supported by the reference")
    c["model_type"] = mt
    qwen = mt in ("qwen2", "qwen3")
    c["vocab_size"] = int(need("vocab_size"))
    c["hidden_size"] = int(need("hidden_size"))
    c["intermediate_size"] = int(need("intermediate_size"))
    c["num_hidden_layers"] = int(need("num_hidden_layers"))
    c["num_attention_heads"] = int(need("num_attention_heads"))
    nkv = raw.get("num_key_value_heads")
    c["num_key_value_heads"] = int(nkv) if nkv is not None else c["num_attention_heads"]
    hd = raw.get("head_dim")
    if hd is None:
        hd = 128 if mt == "qwen3" else c["hidden_size"] // c["num_attention_heads"]
    c["head_dim"] = int(hd)
    c["rms_norm_eps"] = float(raw.get("rms_norm_eps", 1e-6))
    c["tie_word_embeddings"] = bool(raw.get("tie_word_embeddings", False))
    c["max_position_embeddings"] = int(raw.get("max_position_embeddings",
                                               {"mistral": 131072, "qwen2": 32768, "qwen3": 32768}.get(mt, 2048)))
    attention_bias = bool(raw.get("attention_bias", False)) if mt in ("llama", "qwen3") else False
    c["qkv_bias"] = mt == "qwen2" or attention_bias
    c["o_bias"] = attention_bias
    c["mlp_bias"] = bool(raw.get("mlp_bias", False)) if mt == "llama" else False
    c["qk_norm"] = mt == "qwen3"
    if raw.get("hidden_act", "silu") != "silu":
        raise RefError(f"{source}: hidden_act {raw.get('hidden_act')} not supported")
    L = c["num_hidden_layers"]
    windows = [0] * L
    if mt == "mistral":
        sw = raw["sliding_window"] if "sliding_window" in raw else 4096
        windows = [int(sw or 0)] * L
    elif qwen:
        sw = raw["sliding_window"] if "sliding_window" in raw else 4096
        if not raw.get("use_sliding_window", False):
            sw = None
        types = raw.get("layer_types")
        if types is None:
            mwl = int(raw.get("max_window_layers", 28))
            types = ["sliding_attention" if sw is not None and i >= mwl else "full_attention" for i in range(L)]
        windows = [int(sw) if t == "sliding_attention" and sw else 0 for t in types]
    c["windows"] = windows

    # rope: transformers <= 4.x uses rope_theta + rope_scaling; 5.x uses rope_parameters
    # (which carries rope_theta itself).
    rope = raw.get("rope_parameters")
    if rope is None:
        rope = raw.get("rope_scaling")
    rope = dict(rope) if rope else {}
    rtype = rope.get("rope_type", rope.get("type", "default")) or "default"
    theta = rope.get("rope_theta", raw.get("rope_theta", 10000.0))
    c["rope_theta"] = float(theta)
    c["rope_type"] = rtype
    if rtype == "default":
        pass
    elif rtype == "linear":
        c["rope_factor"] = float(rope["factor"])
    elif rtype == "llama3":
        for k in ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"):
            if k not in rope:
                raise RefError(f"{source}: llama3 rope scaling missing {k}")
        c["rope_factor"] = float(rope["factor"])
        c["rope_low_freq_factor"] = float(rope["low_freq_factor"])
        c["rope_high_freq_factor"] = float(rope["high_freq_factor"])
        c["rope_original_max_position_embeddings"] = float(rope["original_max_position_embeddings"])
    elif rtype == "yarn":
        orig = rope.get("original_max_position_embeddings",
                        raw.get("original_max_position_embeddings", c["max_position_embeddings"]))
        c["rope_original_max_position_embeddings"] = float(orig)
        factor = rope.get("factor")
        c["rope_factor"] = float(factor) if factor is not None else c["max_position_embeddings"] / float(orig)
        c["rope_attention_factor"] = rope.get("attention_factor")
        c["rope_mscale"] = rope.get("mscale")
        c["rope_mscale_all_dim"] = rope.get("mscale_all_dim")
        c["rope_beta_fast"] = float(rope.get("beta_fast") or 32)
        c["rope_beta_slow"] = float(rope.get("beta_slow") or 1)
        c["rope_truncate"] = bool(rope.get("truncate", True))
    else:
        raise RefError(f"{source}: rope type {rtype} not supported by the reference")
    if rope.get("partial_rotary_factor", raw.get("partial_rotary_factor", 1.0)) != 1.0:
        raise RefError(f"{source}: partial_rotary_factor not supported")

    if c["num_attention_heads"] % c["num_key_value_heads"] != 0:
        raise RefError(f"{source}: num_attention_heads not a multiple of num_key_value_heads")
    if c["head_dim"] % 2 != 0:
        raise RefError(f"{source}: head_dim must be even")
    return c


def yarn_mscale(scale, m=1.0):
    return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0


def rope_attention_scale(cfg):
    """What cos and sin are multiplied by (YaRN's attention_factor; 1 otherwise)."""
    if cfg["rope_type"] != "yarn":
        return 1.0
    if cfg["rope_attention_factor"] is not None:
        return float(cfg["rope_attention_factor"])
    if cfg["rope_mscale"] and cfg["rope_mscale_all_dim"]:
        return yarn_mscale(cfg["rope_factor"], cfg["rope_mscale"]) / yarn_mscale(cfg["rope_factor"], cfg["rope_mscale_all_dim"])
    return yarn_mscale(cfg["rope_factor"])


def yarn_ramp(cfg):
    """(low, high) of YaRN's linear ramp over the HS/2 frequency indices."""
    dim, base = cfg["head_dim"], cfg["rope_theta"]
    ctx = cfg["rope_original_max_position_embeddings"]

    def corr(rot):  # the dimension index that turns `rot` times over the original context
        return dim * math.log(ctx / (rot * 2 * math.pi)) / (2 * math.log(base))
    low, high = corr(cfg["rope_beta_fast"]), corr(cfg["rope_beta_slow"])
    if cfg["rope_truncate"]:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    return low, high


def rope_inv_freq(cfg):
    """fp64 inverse frequencies (HS/2,), HF formulas for default / linear / llama3."""
    hs = cfg["head_dim"]
    exponents = torch.arange(0, hs, 2, dtype=torch.float64) / hs
    inv_freq = 1.0 / (cfg["rope_theta"] ** exponents)
    rtype = cfg["rope_type"]
    if rtype == "linear":
        inv_freq = inv_freq / cfg["rope_factor"]
    elif rtype == "llama3":
        factor = cfg["rope_factor"]
        low, high = cfg["rope_low_freq_factor"], cfg["rope_high_freq_factor"]
        old_len = cfg["rope_original_max_position_embeddings"]
        low_freq_wavelen = old_len / low    # longer wavelengths than this: scale by 1/factor
        high_freq_wavelen = old_len / high  # shorter than this: unchanged
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
        smooth = (old_len / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
        inv_freq = torch.where(medium, smoothed, scaled)
    elif rtype == "yarn":
        low, high = yarn_ramp(cfg)
        ramp = ((torch.arange(hs // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
        inv_freq = inv_freq / cfg["rope_factor"] * ramp + inv_freq * (1 - ramp)
    return inv_freq


# ----------------------------------------------------------------------------
# weights
# ----------------------------------------------------------------------------

def param_shapes(cfg):
    """{HF name: shape} of every trainable parameter, in a fixed order."""
    V, C, F = cfg["vocab_size"], cfg["hidden_size"], cfg["intermediate_size"]
    NH, NKV, HS = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    s = {"model.embed_tokens.weight": (V, C)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        s[p + "input_layernorm.weight"] = (C,)
        for name, out in (("q", NH * HS), ("k", NKV * HS), ("v", NKV * HS)):
            s[p + f"self_attn.{name}_proj.weight"] = (out, C)
            if cfg["qkv_bias"]:
                s[p + f"self_attn.{name}_proj.bias"] = (out,)
        s[p + "self_attn.o_proj.weight"] = (C, NH * HS)
        if cfg["o_bias"]:
            s[p + "self_attn.o_proj.bias"] = (C,)
        if cfg["qk_norm"]:
            s[p + "self_attn.q_norm.weight"] = (HS,)
            s[p + "self_attn.k_norm.weight"] = (HS,)
        s[p + "post_attention_layernorm.weight"] = (C,)
        for name, shape in (("gate", (F, C)), ("up", (F, C)), ("down", (C, F))):
            s[p + f"mlp.{name}_proj.weight"] = shape
            if cfg["mlp_bias"]:
                s[p + f"mlp.{name}_proj.bias"] = (shape[0],)
    s["model.norm.weight"] = (C,)
    if not cfg["tie_word_embeddings"]:
        s["lm_head.weight"] = (V, C)
    return s


def load_config(model_dir):
    path = os.path.join(model_dir, "config.json")
    if not os.path.isdir(model_dir):
        raise RefError(f"{model_dir}: model directory does not exist")
    try:
        with open(path) as f:
            raw = json.load(f)
    except OSError as e:
        raise RefError(f"{path}: cannot open ({e.strerror})")
    except json.JSONDecodeError as e:
        raise RefError(f"{path}: malformed JSON ({e})")
    return normalize_config(raw, path), raw


def load_model(model_dir):
    """-> (cfg, {HF name: fp64 tensor}, {name: stored dtype})."""
    cfg, _ = load_config(model_dir)
    single = os.path.join(model_dir, "model.safetensors")
    index = os.path.join(model_dir, "model.safetensors.index.json")
    arrays, dtypes = {}, {}
    if os.path.exists(single):
        a, d, _ = read_safetensors(single)
        arrays.update(a)
        dtypes.update(d)
        where = {n: single for n in a}
    elif os.path.exists(index):
        try:
            with open(index) as f:
                wm = json.load(f)["weight_map"]
        except (OSError, json.JSONDecodeError, KeyError) as e:
            raise RefError(f"{index}: bad index ({e})")
        where = {}
        for shard in sorted(set(wm.values())):
            sp = os.path.join(model_dir, shard)
            a, d, _ = read_safetensors(sp)
            for n in a:
                if wm.get(n) != shard:
                    raise RefError(f"{sp}: tensor {n} not listed for this shard in {index}")
                where[n] = sp
            arrays.update(a)
            dtypes.update(d)
        missing_from_shards = set(wm) - set(arrays)
        if missing_from_shards:
            n = sorted(missing_from_shards)[0]
            raise RefError(f"{os.path.join(model_dir, wm[n])}: tensor {n} listed in index but absent")
    else:
        raise RefError(f"{single}: no weights (neither model.safetensors nor its index)")

    shapes = param_shapes(cfg)
    params = {}
    for name, shape in shapes.items():
        if name not in arrays:
            raise RefError(f"{model_dir}: weights missing tensor {name}")
        a = arrays[name]
        if tuple(a.shape) != tuple(shape):
            raise RefError(f"{where[name]}: tensor {name} has shape {list(a.shape)}, expected {list(shape)}")
        params[name] = torch.from_numpy(np.array(a, dtype=np.float64))
    for name in arrays:
        if name in shapes or name.endswith("rotary_emb.inv_freq"):
            continue
        if name == "lm_head.weight" and cfg["tie_word_embeddings"]:
            continue  # HF ties it to the embedding regardless
        raise RefError(f"{where[name]}: unexpected tensor {name}")
    return cfg, params, {n: dtypes[n] for n in shapes}


def load_tokens(path, vocab_size=None):
    """.npy integer array (B, T+1) or (T+1,) -> (inputs (B,T), labels (B,T)) int64 tensors."""
    try:
        arr = np.load(path, allow_pickle=False)
    except OSError as e:
        raise RefError(f"{path}: cannot open ({getattr(e, 'strerror', None) or e})")
    except ValueError as e:
        raise RefError(f"{path}: not a valid .npy file ({e})")
    if arr.dtype.kind not in "iu":
        raise RefError(f"{path}: tokens must be integers, found dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise RefError(f"{path}: tokens must have 1 or 2 dims, found {arr.ndim}")
    if arr.shape[1] < 2:
        raise RefError(f"{path}: need at least 2 tokens per row")
    arr = arr.astype(np.int64)
    inputs = arr[:, :-1]
    labels = arr[:, 1:]
    if vocab_size is not None:
        if inputs.size and (inputs.min() < 0 or inputs.max() >= vocab_size):
            raise RefError(f"{path}: token id out of range [0, {vocab_size})")
        ok = (labels == IGNORE_INDEX) | ((labels >= 0) & (labels < vocab_size))
        if not ok.all():
            raise RefError(f"{path}: label out of range [0, {vocab_size})")
    return torch.from_numpy(np.ascontiguousarray(inputs)), torch.from_numpy(np.ascontiguousarray(labels))


# ----------------------------------------------------------------------------
# model (vectorised)
# ----------------------------------------------------------------------------

def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope_cos_sin(cfg, T):
    pos = torch.arange(T, dtype=torch.float64)
    freqs = pos[:, None] * rope_inv_freq(cfg)[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)  # (T, HS)
    m = rope_attention_scale(cfg)
    return emb.cos() * m, emb.sin() * m


def linear(x, params, name):
    """x W^T (+ b when the model has that bias): HF nn.Linear."""
    y = x @ params[name + ".weight"].T
    b = params.get(name + ".bias")
    return y if b is None else y + b


def attention_mask(T, window):
    """(T, T) bool: key j visible to query i iff j <= i and (no window or i - window < j)."""
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    m = j <= i
    if window:
        m &= j > i - window
    return m


def forward_loss(cfg, params, inputs, labels):
    """Mean cross-entropy over labels != -100 (HF *ForCausalLM with pre-shifted labels)."""
    B, T = inputs.shape
    NH, NKV, HS = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps = cfg["rms_norm_eps"]
    emb = params["model.embed_tokens.weight"]
    x = emb[inputs]  # (B, T, C)
    cos, sin = rope_cos_sin(cfg, T)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms_norm(x, params[p + "input_layernorm.weight"], eps)
        q = linear(h, params, p + "self_attn.q_proj").view(B, T, NH, HS)
        k = linear(h, params, p + "self_attn.k_proj").view(B, T, NKV, HS)
        v = linear(h, params, p + "self_attn.v_proj").view(B, T, NKV, HS)
        if cfg["qk_norm"]:  # Qwen3: RMSNorm over each head's HS, before RoPE
            q = rms_norm(q, params[p + "self_attn.q_norm.weight"], eps)
            k = rms_norm(k, params[p + "self_attn.k_norm.weight"], eps)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = NH // NKV  # HF repeat_kv: query head j reads kv head j // rep
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        scores = (q @ k.transpose(-1, -2)) * (HS ** -0.5)
        scores = scores.masked_fill(~attention_mask(T, cfg["windows"][i]), float("-inf"))
        att = torch.softmax(scores, dim=-1) @ v  # (B, NH, T, HS)
        att = att.transpose(1, 2).reshape(B, T, NH * HS)
        x = x + linear(att, params, p + "self_attn.o_proj")
        h = rms_norm(x, params[p + "post_attention_layernorm.weight"], eps)
        g = linear(h, params, p + "mlp.gate_proj")
        u = linear(h, params, p + "mlp.up_proj")
        x = x + linear(torch.nn.functional.silu(g) * u, params, p + "mlp.down_proj")
    x = rms_norm(x, params["model.norm.weight"], eps)
    head = emb if cfg["tie_word_embeddings"] else params["lm_head.weight"]
    logits = x @ head.T
    return torch.nn.functional.cross_entropy(
        logits.reshape(B * T, -1), labels.reshape(B * T), ignore_index=IGNORE_INDEX, reduction="mean")


def loss_and_grads(cfg, params, inputs, labels):
    """-> (loss float, {name: fp64 gradient}) for every parameter in params."""
    leaves = {n: t.detach().clone().to(torch.float64).requires_grad_(True) for n, t in params.items()}
    loss = forward_loss(cfg, leaves, inputs, labels)
    loss.backward()
    return loss.item(), {n: t.grad.detach() for n, t in leaves.items()}


# ----------------------------------------------------------------------------
# random models
# ----------------------------------------------------------------------------

def random_params(cfg, seed):
    """Random fp32 weights; matrices ~N(0, 1/fan_in) so attention is far from uniform and RoPE
    matters, norm weights 1 + 0.1*N(0,1), LM head (or tied embedding) ~N(0, 1/C) for O(1) logits,
    untied embedding ~N(0, 0.03^2)."""
    g = torch.Generator().manual_seed(seed)
    C = cfg["hidden_size"]
    out = {}
    for name, shape in param_shapes(cfg).items():
        if name.endswith(".bias"):  # biases large enough to matter (HF initialises them to 0)
            t = 0.2 * torch.randn(shape, generator=g, dtype=torch.float64)
        elif len(shape) == 1:
            t = 1.0 + 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)
        elif name == "model.embed_tokens.weight":
            # tied: it is also the LM head, so O(1) logits; untied: small, so that the first
            # RMSNorm's eps matters and a mis-read rms_norm_eps shows in the gradients
            t = torch.randn(shape, generator=g, dtype=torch.float64) * (1.0 / math.sqrt(C) if cfg["tie_word_embeddings"] else 0.03)
        elif name == "lm_head.weight":
            t = torch.randn(shape, generator=g, dtype=torch.float64) / math.sqrt(C)
        else:
            fan_in = shape[1]
            scale = 0.5 if (name.endswith("o_proj.weight") or name.endswith("down_proj.weight")) else 1.0
            t = torch.randn(shape, generator=g, dtype=torch.float64) * (scale / math.sqrt(fan_in))
        out[name] = t.to(torch.float32)
    return out


def write_random_model(model_dir, config_dict, seed=0, sharded=False, dtype="F32", num_shards=2):
    """Writes model_dir/config.json and random weights (single file or num_shards >= 2 shards)."""
    os.makedirs(model_dir, exist_ok=True)
    cfg = normalize_config(config_dict)
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(config_dict, f, indent=2)
    tensors = random_params(cfg, seed)
    if not sharded:
        write_safetensors(os.path.join(model_dir, "model.safetensors"), tensors, dtype, {"format": "pt"})
        return
    names = list(tensors)
    num_shards = max(2, min(num_shards, len(names)))
    per = -(-len(names) // num_shards)
    weight_map, total = {}, 0
    for s in range(num_shards):
        fname = f"model-{s + 1:05d}-of-{num_shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[s * per:(s + 1) * per]}
        write_safetensors(os.path.join(model_dir, fname), part, dtype, {"format": "pt"})
        for n, t in part.items():
            weight_map[n] = fname
            total += t.numel() * {"F32": 4, "F16": 2, "BF16": 2, "F64": 8}[dtype]
    with open(os.path.join(model_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


# ----------------------------------------------------------------------------
# self-test (naive loops, finite differences): llama_ref_check.py
# ----------------------------------------------------------------------------

def self_test(verbose=True):
    """Checks the reference against naive per-token loops and finite differences; returns the failures."""
    import llama_ref_check
    return llama_ref_check.self_test(verbose)


# ----------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description="fp64 reference loss and gradients of an HF Llama model")
    ap.add_argument("--model", help="HF model directory (config.json + safetensors)")
    ap.add_argument("--tokens", help=".npy integer array (B, T+1) or (T+1)")
    ap.add_argument("--out", help="write F64 gradients of every parameter here (safetensors)")
    ap.add_argument("--out-dtype", default="F64", choices=["F64", "F32"])
    ap.add_argument("--self-test", action="store_true", help="check the reference itself and exit")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.self_test:
        n = self_test()
        print(f"self-test: {n} failed")
        return 1 if n else 0
    if not a.model or not a.tokens:
        ap.error("--model and --tokens are required")
    try:
        cfg, params, _ = load_model(a.model)
        inputs, labels = load_tokens(a.tokens, cfg["vocab_size"])
    except RefError as e:
        print(f"llama_ref: {e}", file=sys.stderr)
        return 1
    loss, grads = loss_and_grads(cfg, params, inputs, labels)
    if a.out:
        write_safetensors(a.out, grads, a.out_dtype, {"loss": repr(loss)})
    n_tok = int((labels != IGNORE_INDEX).sum())
    print(json.dumps({"loss": loss, "tokens": n_tok}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
