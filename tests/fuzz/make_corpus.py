#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets, tests/fuzz/corpus/<name>/, and
their dictionaries, tests/fuzz/dict/<name>.dict.

Small valid files of each format plus a few near-misses, so that the fuzzers
start from inside the parsers instead of at the magic bytes; the dictionaries
hold each format's field names and awkward tokens. Run again after changing
it; it replaces the seed files it owns (seed_*) and leaves others. Plain
Python, no numpy: the bytes are written by hand.
"""
import json
import os
import struct
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed_" + name), "wb") as f:
        f.write(data)


# ---- safetensors ----------------------------------------------------------


def safetensors(tensors, metadata=None, pad=True):
    """tensors: list of (name, dtype, shape, raw bytes)."""
    header, off, data = {}, 0, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


def f32(*v):
    return struct.pack("<%df" % len(v), *v)


def seeds_safetensors():
    t = "safetensors"
    put(t, "f32", safetensors([("w", "F32", [2, 3], f32(1, 2, 3, 4, 5, 6))], {"format": "pt"}))
    put(t, "mixed", safetensors([
        ("a", "BF16", [2], struct.pack("<2H", 0x3F80, 0xC000)),
        ("b", "F16", [1, 2], struct.pack("<2H", 0x3C00, 0x4000)),
        ("c", "I32", [3], struct.pack("<3i", 1, -2, 3)),
        ("d", "U8", [0], b""),
        ("e", "F64", [1], struct.pack("<d", 2.5)),
    ]))
    put(t, "empty", safetensors([], {"format": "pt"}))
    put(t, "scalar", safetensors([("s", "F32", [], f32(7))]))
    put(t, "huge_tensor", safetensors([("w", "F32", [1 << 18, 1 << 20], b"")]))
    put(t, "long_header_len", struct.pack("<Q", 1 << 63) + b"{}")
    put(t, "hole", safetensors([("w", "F32", [1], f32(1))]) + b"xxxx")


def seeds_safetensors_index():
    t = "safetensors_index"
    good = {"metadata": {"total_size": 48},
            "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors",
                           "c": "model-00002-of-00002.safetensors"}}
    put(t, "good", json.dumps(good, indent=2))
    put(t, "one_shard", json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors"}}))
    put(t, "missing", json.dumps({"weight_map": {"a": "model-00003-of-00003.safetensors"}}))
    put(t, "not_a_shard", json.dumps({"weight_map": {"a": "notes.txt"}}))
    put(t, "traversal", json.dumps({"weight_map": {"a": "../model/model-00001-of-00002.safetensors"}}))


# ---- config.json ----------------------------------------------------------


def seeds_config():
    t = "config"
    llama = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128256,
        "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "hidden_act": "silu", "attention_bias": False,
        "mlp_bias": False, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
        "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    }
    put(t, "llama31", json.dumps(llama, indent=2))
    tiny = {"vocab_size": 259, "hidden_size": 128, "intermediate_size": 344, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": None,
            "rope_scaling": None, "bos_token_id": None}
    put(t, "tiny", json.dumps(tiny))
    v5 = dict(tiny, head_dim=32, dtype="float32",
              rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0})
    put(t, "v5", json.dumps(v5))
    put(t, "absurd", json.dumps(dict(tiny, vocab_size=1 << 40, hidden_size=1 << 30)))
    put(t, "qwen2_window", json.dumps(dict(tiny, model_type="qwen2", use_sliding_window=True, sliding_window=64,
                                           max_window_layers=1, rope_theta=1000000.0)))
    put(t, "qwen3_layer_types", json.dumps(dict(tiny, model_type="qwen3", head_dim=16, attention_bias=False,
                                                layer_types=["full_attention", "sliding_attention"],
                                                sliding_window=32)))
    put(t, "mistral_yarn", json.dumps(dict(tiny, model_type="mistral", sliding_window=None,
                                           rope_scaling={"rope_type": "yarn", "factor": 4.0, "beta_fast": 32,
                                                         "beta_slow": 1, "original_max_position_embeddings": 512,
                                                         "attention_factor": None, "truncate": False})))


# ---- tokenizer.json -------------------------------------------------------


def byte_alphabet():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs))]


def seeds_tokenizer():
    t = "tokenizer"
    alpha = byte_alphabet()
    vocab = {c: i for i, c in enumerate(alpha)}
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("l", "l"), ("ll", "o")]
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    special = len(vocab)
    tok = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": special, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": False, "vocab": vocab, "merges": [a + " " + b for a, b in merges]},
    }
    put(t, "gpt2ish", json.dumps(tok, ensure_ascii=False))
    llama3 = json.loads(json.dumps(tok))
    llama3["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
                                               "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
                                               "\\s+(?!\\S)|\\s+"},
         "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    llama3["model"]["merges"] = [[a, b] for a, b in merges]
    llama3["model"]["ignore_merges"] = True
    cfg = {"bos_token": "<|endoftext|>", "eos_token": {"content": "<|endoftext|>"}}
    put(t, "llama3ish_with_config", json.dumps(llama3, ensure_ascii=False).encode() + b"\0" +
        json.dumps(cfg).encode())
    small = {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]},
             "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True}, "decoder": {"type": "ByteLevel"},
             "added_tokens": []}
    put(t, "small", json.dumps(small))


# ---- .npy -----------------------------------------------------------------


def npy(descr, shape, raw, version=1, fortran=False):
    dims = ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "")
    h = "{'descr': '%s', 'fortran_order': %s, 'shape': (%s), }" % (descr, fortran, dims)
    pre = 10 if version == 1 else 12
    h += " " * ((64 - (pre + len(h) + 1) % 64) % 64) + "\n"
    lenfmt = "<H" if version == 1 else "<I"
    return b"\x93NUMPY" + bytes([version, 0]) + struct.pack(lenfmt, len(h)) + h.encode("latin1") + raw


def seeds_npy():
    t = "npy"
    put(t, "i4_2d", npy("<i4", (2, 3), struct.pack("<6i", 1, 2, 3, 4, 5, 6)))
    put(t, "u2_1d", npy("<u2", (5,), struct.pack("<5H", 9, 8, 7, 6, 65535)))
    put(t, "i8_v2", npy("<i8", (1, 2), struct.pack("<2q", 3, 4), version=2))
    put(t, "u1_v3", npy("|u1", (4,), bytes([0, 1, 2, 255]), version=3))
    put(t, "empty", npy("<i4", (0, 5), b""))
    put(t, "huge_shape", npy("<i8", (1 << 40, 1 << 40), b""))


# ---- .bin token shards ----------------------------------------------------


def shard(magic, version, tokens, fmt, count=None):
    header = [magic, version, len(tokens) if count is None else count] + [0] * 253
    return struct.pack("<256i", *header) + struct.pack("<%d%s" % (len(tokens), fmt), *tokens)


def seeds_token_shards():
    t = "token_shards"
    put(t, "v1", shard(20240520, 1, [1, 2, 3, 65535, 0], "H"))
    put(t, "v2", shard(20240520, 2, [7, 8, 2 ** 31 - 1], "I"))
    put(t, "llama3", shard(20240801, 7, [128000, 9, 128001], "I"))
    put(t, "count_too_big", shard(20240520, 1, [1, 2], "H", count=2 ** 31 - 1))


# ---- jsonl ----------------------------------------------------------------


def seeds_data_jsonl():
    t = "data_jsonl"
    put(t, "docs", '{"text": "The quick brown fox."}\n\n{"text": "caf\\u00e9 \\ud83d\\ude00", "id": 2}\n'
                   '{"text": ""}\n{"text": "x"}\n')
    put(t, "one", '{"text": "a"}')
    put(t, "bad_line", '{"text": "ok"}\n{"text": 3}\n')
    put(t, "crlf", '{"text": "line one"}\r\n{"text": "line two"}\r\n')


# ---- train config ---------------------------------------------------------


def seeds_train_config():
    t = "train_config"
    demo = """model:
  init: {vocab_size: 259, hidden_size: 128, intermediate_size: 344, num_hidden_layers: 2,
         num_attention_heads: 4, num_key_value_heads: 2}
data:
  kind: passkey
  passkey_digits: 5
  depth_min: 0.1
  depth_max: 0.9
seq_len: 128
batch_size: 4
steps: 300
lr: 3.0e-3
warmup_steps: 20
curriculum:
  - {until_step: 100, seq_len: 128, batch_size: 8}
  - {until_step: 200, seq_len: 512, lr_scale: 0.5}
recompute: none
mlp_tiles: auto
lora: {rank: 0}
eval: {lengths: [128, 512], depths: [0.5], samples: 2}
"""
    put(t, "demo", demo)
    put(t, "with_overrides", "model:\n  path: /nonexistent/model\ndata:\n  kind: tokens\n  path: [a.bin, b.npy]\n"
        "\0seq_len=256\nlora.rank=8\nlora.targets=[q_proj, v_proj]\ndata.pack=false\nplan=auto\n")
    put(t, "minimal", "model: {path: m}\n")
    put(t, "chunked", "model: {path: m}\nchunk_mode: seco\nchunk_size: 64\noffload: host\nzero: 1\n"
        "cp_kind: ring\ndevice_mem: 8GiB\n")
    put(t, "bad_type", "model: {path: m}\nsteps: ten\n")


# ---- checkpoint state.json ------------------------------------------------


def seeds_checkpoint():
    t = "checkpoint"
    tokens_state = {"step": 12, "bad_steps": 0, "run": {"seed": 0},
                    "data": {"kind": "tokens", "offset": 3, "epoch": 1, "tokens": 7}}
    put(t, "tokens", json.dumps(tokens_state, indent=1))
    jsonl_state = {"step": 4, "data": {"kind": "jsonl", "files": 1, "file": 0, "offset": 17, "line": 3,
                                        "token": 2, "epoch": 0}}
    put(t, "jsonl_dirs", b"step_00000002\nstep_00000010\nstep_00000011!\nstep_00000003.tmp99\0" +
        json.dumps(jsonl_state).encode())
    put(t, "passkey", json.dumps({"step": 1, "data": {"kind": "passkey", "index": 5}}))
    put(t, "no_data", "{\"step\": 3}")


# ---- LoRA adapter_config.json ---------------------------------------------


def seeds_lora():
    t = "lora"
    cfg = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 2, "lora_alpha": 4.0, "lora_dropout": 0.0,
           "target_modules": ["q_proj", "v_proj"], "bias": "none", "fan_in_fan_out": False,
           "inference_mode": True, "base_model_name_or_path": "fuzz-base"}
    put(t, "good", json.dumps(cfg, indent=2))
    put(t, "rank4_all", json.dumps(dict(cfg, r=4, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                                    "gate_proj", "up_proj", "down_proj"])))
    put(t, "string_targets", json.dumps(dict(cfg, target_modules="all-linear")))
    put(t, "huge_rank", json.dumps(dict(cfg, r=1 << 40)))


# ---- dictionaries ---------------------------------------------------------

JSON_TOKENS = ['"{"', '"}"', '"["', '"]"', '":"', '","', '"null"', '"true"', '"false"', '"-1"', '"0"', '"1e999"',
               '"18446744073709551615"', '"9223372036854775807"', '"-9223372036854775808"', '"\\\\u0000"',
               '"0.5"']
YAML_TOKENS = ['":"', '": "', '"\\x0a"', '"  "', '"- "', '"{"', '"}"', '"["', '"]"', '","', '"null"', '"~"',
               '"true"', '"yes"', '"auto"', '"\\x00"', '"="', '"."', '"1e999"', '"9223372036854775808"', '"-1"',
               '"0"', '"!!str "', '"&a "', '"*a"', '"? "', '"\\x22"', '"\'"']


def put_dict(target, words, base=JSON_TOKENS, quoted=True):
    d = os.path.join(os.path.dirname(ROOT), "dict")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, target + ".dict"), "w") as f:
        f.write("# libFuzzer dictionary for fuzz_%s (scripts/fuzz.sh passes it with -dict)\n" % target)
        for x in base:
            f.write(x + "\n")
        for w in words:
            f.write(('"\\"%s\\""' if quoted else '"%s"') % w + "\n")


def dicts():
    put_dict("config", ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                        "num_attention_heads", "num_key_value_heads", "head_dim", "max_position_embeddings",
                        "rms_norm_eps", "rope_theta", "rope_scaling", "rope_parameters", "rope_type", "type",
                        "factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings",
                        "llama3", "linear", "default", "tie_word_embeddings", "initializer_range", "torch_dtype",
                        "dtype", "bos_token_id", "eos_token_id", "model_type", "llama", "hidden_act", "silu",
                        "attention_bias", "mlp_bias", "qwen2", "qwen3", "mistral", "sliding_window",
                        "use_sliding_window", "max_window_layers", "layer_types", "full_attention",
                        "sliding_attention", "yarn", "dynamic", "attention_factor", "mscale", "mscale_all_dim",
                        "beta_fast", "beta_slow", "truncate", "partial_rotary_factor"])
    put_dict("safetensors", ["dtype", "shape", "data_offsets", "__metadata__", "F32", "F16", "BF16", "F64", "I32",
                             "I64", "U8", "U16", "U32", "format", "pt"])
    put_dict("safetensors_index", ["weight_map", "metadata", "total_size", "model-00001-of-00002.safetensors",
                                   "model-00002-of-00002.safetensors", "a", "b", "c", "notes.txt", ".."])
    put_dict("tokenizer", ["model", "type", "BPE", "vocab", "merges", "added_tokens", "id", "content", "special",
                           "normalized", "lstrip", "rstrip", "single_word", "pre_tokenizer", "ByteLevel", "Split",
                           "Sequence", "pretokenizers", "pattern", "Regex", "String", "behavior", "Isolated",
                           "invert", "add_prefix_space", "use_regex", "decoder", "normalizer", "post_processor",
                           "unk_token", "fuse_unk", "byte_fallback", "ignore_merges", "dropout",
                           "continuing_subword_prefix", "end_of_word_suffix", "bos_token", "eos_token",
                           "<|endoftext|>", "<s>", "</s>"])
    put_dict("data_jsonl", ["text"], JSON_TOKENS + ['"\\x0a"', '"\\x0d\\x0a"'])
    put_dict("checkpoint", ["step", "bad_steps", "run", "data", "kind", "tokens", "jsonl", "passkey", "offset",
                            "epoch", "files", "file", "line", "token", "sample", "seed"],
             JSON_TOKENS + ['"\\x00"', '"step_"', '"!"'])
    put_dict("lora", ["peft_type", "LORA", "r", "lora_alpha", "target_modules", "fan_in_fan_out", "use_rslora",
                      "use_dora", "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
                      "all-linear"])
    put_dict("train_config", ["model", "path", "init", "data", "kind", "seq_len", "batch_size", "grad_accum",
                              "steps", "lr", "min_lr", "warmup_steps", "decay_steps", "weight_decay", "grad_clip",
                              "beta1", "beta2", "seed", "out_dir", "save_every", "keep_last", "resume",
                              "stop_after", "log_every", "max_bad_steps", "curriculum", "until_step", "lr_scale",
                              "device_mem", "host_mem", "device", "dtype", "cp_kind", "cp_ulysses", "dp", "zero",
                              "plan", "recompute", "offload", "offload_dir", "mlp_tiles", "loss_tiles",
                              "chunk_mode", "chunk_size", "chunk_budget", "lora", "rank", "alpha", "targets",
                              "eval", "lengths", "depths", "samples", "heatmap", "pack", "eos_id", "tokenizer",
                              "passkey_digits", "passkey_loss", "passkey_min_len", "passkey_position_span",
                              "depth_min", "depth_max", "seco", "spaco", "host", "disk", "ring", "zigzag",
                              "hybrid", "ulysses"], YAML_TOKENS, quoted=False)


def main():
    for f in [seeds_safetensors, seeds_safetensors_index, seeds_config, seeds_tokenizer, seeds_npy,
              seeds_token_shards, seeds_data_jsonl, seeds_train_config, seeds_checkpoint, seeds_lora, dicts]:
        f()
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(ROOT) for f in fs)
    print("corpus: %d bytes under %s" % (total, ROOT), file=sys.stderr)


if __name__ == "__main__":
    main()
