#!/usr/bin/python3
"""PyTorch fp32 Llama forward+backward: the baselines longctx is timed against (bench/compare_torch.py).

--impl hf (what a user would pick instead of longctx): Hugging Face transformers'
own LlamaForCausalLM, from_pretrained(dtype=float32, attn_implementation="sdpa"),
gradient checkpointing with its defaults (activation_checkpointing_enable(), the new name of
gradient_checkpointing_enable() in 5.x), use_cache=False, its own loss
(labels passed pre-shifted as shift_labels, so every one of the T labels counts, as
in longctx). Needs transformers 5.x: scripts/install-hf-bench.sh makes .venv-hf/.

--impl eager (the default; runs on Debian's torch 1.13, no transformers): written in the style of Hugging Face transformers' LlamaForCausalLM with
attn_implementation="eager" and gradient checkpointing on: every decoder layer
runs under torch.utils.checkpoint (use_reentrant=False), attention is
q @ k^T * scale + additive causal mask -> fp32 softmax -> @ v with repeat_kv
for GQA, rotate-half RoPE (llama3 inv_freq scaling), RMSNorm, SwiGLU, an LM head
tied to the embedding when the config says so, full logits and F.cross_entropy.

Weights, config parsing, llama3 inv_freq and the token split come from the fp64
oracle tests/reference/llama_ref.py (it also holds the safetensors reader).

CLI (prints one JSON line last):
    /usr/bin/python3 bench/torch_llama.py --model DIR --tokens T.npy [--repeat 3] [--threads N]
    .venv-hf/bin/python bench/torch_llama.py --impl hf --model DIR --tokens T.npy [--repeat 3] [--threads N]
      {"loss", "step_seconds", "step_seconds_all", "rss_before_bytes", "peak_rss_bytes",
       "step_bytes", "threads", "torch", "transformers", "impl"}
      or {"oom": true, "error": "..."} on allocation failure
    Memory: rss_before_bytes is VmRSS after import and weight load; peak_rss_bytes is
    getrusage(RUSAGE_SELF).ru_maxrss after the steps (warm-up included); step_bytes is
    their difference, what the steps added.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
import llama_ref  # noqa: E402


class RMSNorm(torch.nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def repeat_kv(x, n_rep):
    """(B, KV, T, D) -> (B, KV*n_rep, T, D), query head j reads kv head j // n_rep."""
    if n_rep == 1:
        return x
    b, kv, t, d = x.shape
    return x[:, :, None, :, :].expand(b, kv, n_rep, t, d).reshape(b, kv * n_rep, t, d)


class Attention(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C, NH, NKV, HS = (cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"],
                          cfg["head_dim"])
        self.nh, self.nkv, self.hs = NH, NKV, HS
        self.scaling = HS ** -0.5
        self.q_proj = torch.nn.Linear(C, NH * HS, bias=False)
        self.k_proj = torch.nn.Linear(C, NKV * HS, bias=False)
        self.v_proj = torch.nn.Linear(C, NKV * HS, bias=False)
        self.o_proj = torch.nn.Linear(NH * HS, C, bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.nh, self.hs).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.nkv, self.hs).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.nkv, self.hs).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = repeat_kv(k, self.nh // self.nkv)
        v = repeat_kv(v, self.nh // self.nkv)
        w = torch.matmul(q, k.transpose(2, 3)) * self.scaling
        w = w + mask
        w = F.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
        o = torch.matmul(w, v).transpose(1, 2).reshape(B, T, self.nh * self.hs)
        return self.o_proj(o)


class MLP(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C, Fd = cfg["hidden_size"], cfg["intermediate_size"]
        self.gate_proj = torch.nn.Linear(C, Fd, bias=False)
        self.up_proj = torch.nn.Linear(C, Fd, bias=False)
        self.down_proj = torch.nn.Linear(Fd, C, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Model(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = torch.nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.layers = torch.nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg["num_hidden_layers"]))
        self.norm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])


class LlamaForCausalLM(torch.nn.Module):
    def __init__(self, cfg, checkpointing=True):
        super().__init__()
        self.cfg = cfg
        self.checkpointing = checkpointing
        self.model = Model(cfg)
        self.lm_head = torch.nn.Linear(cfg["hidden_size"], cfg["vocab_size"], bias=False)
        if cfg["tie_word_embeddings"]:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.register_buffer("inv_freq", llama_ref.rope_inv_freq(cfg).to(torch.float32), persistent=False)

    def forward(self, inputs, labels):
        B, T = inputs.shape
        x = self.model.embed_tokens(inputs)
        pos = torch.arange(T, dtype=torch.float32)
        freqs = pos[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos()[None, None], emb.sin()[None, None]  # (1, 1, T, HS)
        # HF's 4D additive causal mask: 0 on and below the diagonal, dtype min above
        mask = torch.full((T, T), torch.finfo(x.dtype).min).triu(1)[None, None]
        for layer in self.model.layers:
            if self.checkpointing and self.training:
                x = checkpoint(layer, x, cos, sin, mask, use_reentrant=False)
            else:
                x = layer(x, cos, sin, mask)
        logits = self.lm_head(self.model.norm(x)).float()
        return F.cross_entropy(logits.view(B * T, -1), labels.reshape(B * T), ignore_index=llama_ref.IGNORE_INDEX)


def load(model_dir):
    """-> fp32 LlamaForCausalLM holding the weights of model_dir."""
    cfg, params, _ = llama_ref.load_model(model_dir)
    m = LlamaForCausalLM(cfg)
    state = {n: t.to(torch.float32) for n, t in params.items()}
    if cfg["tie_word_embeddings"]:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    missing, unexpected = m.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise llama_ref.RefError(f"{model_dir}: weights do not fit the model (missing {missing}, unexpected {unexpected})")
    return m.train()


def load_hf(model_dir):
    """-> transformers.LlamaForCausalLM of model_dir: fp32, SDPA attention, gradient checkpointing on."""
    import transformers
    m = transformers.LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    m.config.use_cache = False
    # transformers 5.x renamed gradient_checkpointing_enable (a deprecated alias now) to activation_checkpointing_enable;
    # the defaults of either: every decoder layer, torch.utils.checkpoint(use_reentrant=False)
    (getattr(m, "activation_checkpointing_enable", None) or m.gradient_checkpointing_enable)()
    return m.train()


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def main(argv=None):
    ap = argparse.ArgumentParser(description="eager PyTorch fp32 Llama forward+backward timing")
    ap.add_argument("--model", required=True, help="HF model directory")
    ap.add_argument("--tokens", required=True, help=".npy int array (B, T+1) or (T+1)")
    ap.add_argument("--repeat", type=int, default=3, help="timed steps after one warm-up step")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: os.cpu_count())")
    ap.add_argument("--no-checkpointing", action="store_true", help="keep every layer's activations")
    ap.add_argument("--impl", choices=("eager", "hf"), default="eager",
                    help="eager: this file's model (default); hf: transformers' LlamaForCausalLM with SDPA")
    a = ap.parse_args(argv)
    if a.repeat < 1:
        ap.error("--repeat must be >= 1")
    threads = a.threads or os.cpu_count()
    torch.set_num_threads(threads)
    out = {"impl": a.impl, "torch": torch.__version__, "threads": threads}
    try:
        if a.impl == "hf":
            import transformers
            out["transformers"] = transformers.__version__
            model = load_hf(a.model)
            if a.no_checkpointing:
                (getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable)()
            inputs, labels = llama_ref.load_tokens(a.tokens, model.config.vocab_size)
            out["attn_implementation"] = model.config._attn_implementation

            def step():
                return model(input_ids=inputs, labels=labels, shift_labels=labels, use_cache=False).loss
        else:
            model = load(a.model)
            model.checkpointing = not a.no_checkpointing
            inputs, labels = llama_ref.load_tokens(a.tokens, model.cfg["vocab_size"])

            def step():
                return model(inputs, labels)
    except llama_ref.RefError as e:
        print(f"torch_llama: {e}", file=sys.stderr)
        return 1
    out["tokens"] = int(inputs.numel())
    out["rss_before_bytes"] = rss_before = rss_bytes()
    out["peak_rss_before_bytes"] = peak_rss_bytes()
    secs, loss = [], None
    try:
        for r in range(a.repeat + 1):
            model.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            loss = step()
            loss.backward()
            dt = time.perf_counter() - t0
            if r > 0:  # step 0 is the warm-up
                secs.append(dt)
            loss = loss.item()
    except (RuntimeError, MemoryError) as e:  # allocation failure under RLIMIT_AS
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if isinstance(e, MemoryError) or "alloc" in msg.lower() or "memory" in msg.lower():
            out.update(oom=True, error=msg, peak_rss_bytes=peak_rss_bytes())
            print(json.dumps(out), flush=True)
            return 0
        raise
    out["loss"] = loss
    out["step_seconds"] = statistics.median(secs)
    out["step_seconds_all"] = secs
    out["peak_rss_bytes"] = peak = peak_rss_bytes()
    out["step_bytes"] = peak - rss_before
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
