#!/usr/bin/env python3
"""One training step (forward + backward) of a Llama-3.2-1B-shaped model on the GPU: longctx `grad
--device cuda --dtype bf16 --plan auto` against Hugging Face LlamaForCausalLM (bf16, SDPA attention,
gradient checkpointing) on the same weights and tokens, side by side in one run.

    python3 bench/gpu_step.py --longctx build-gpu/bin/longctx [--T 16384,32768] [--json OUT.json]

For each T: tokens/s, MFU and peak GPU memory of both. MFU = tokens/s x (6N + 6 L C T) / 989e12 (N the
parameters, causal attention counted once: L blocks, C = heads x head size; recomputation not counted).
Both sides get a warm-up step, then the median of --repeat timed steps. The weights are random
(`longctx init`), written once as fp32 safetensors; longctx computes in bf16 math on fp32 storage in this
build (its memory is the fp32 engine's), HF holds them in bf16.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

LLAMA_1B = dict(
    architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=128256, hidden_size=2048,
    intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
    max_position_embeddings=131072, rms_norm_eps=1e-5, rope_theta=500000.0,
    rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 8192},
    tie_word_embeddings=True, initializer_range=0.02, torch_dtype="float32")
PEAK_FLOPS = 989e12  # H100/H200 dense bf16, the issue's MFU denominator


def n_params(c):
    C, F, V, L = c["hidden_size"], c["intermediate_size"], c["vocab_size"], c["num_hidden_layers"]
    hs = C // c["num_attention_heads"]
    kv = c["num_key_value_heads"] * hs
    per_block = C * C * 2 + 2 * C * kv + 3 * C * F + 2 * C
    return V * C * (1 if c["tie_word_embeddings"] else 2) + L * per_block + C


def step_flops(c, T):
    return 6 * n_params(c) * T + 6 * c["num_hidden_layers"] * c["hidden_size"] * T * T


def run_longctx(binary, model, toks, repeat, timeout):
    cmd = [binary, "grad", "--model", model, "--tokens", toks, "--device", "cuda", "--dtype", "bf16", "--plan",
           "auto", "--repeat", str(repeat + 1)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip()[-1500:])
    j = json.loads(r.stdout.strip().splitlines()[-1])
    secs = j["step_seconds_all"][1:]  # the first step builds cuDNN graphs and picks GEMM algorithms
    plan = j["plan"]
    desc = ", ".join(f"{k}={v}" for k, v in plan.items() if k in ("recompute", "offload", "mlp_tiles",
                                                                    "loss_tiles", "chunk_mode", "chunk_size"))
    return statistics.median(secs), j.get("gpu_pool_peak_bytes", j["peak_bytes"]["device"]), desc, j["loss"]


def run_hf(model, toks_np, repeat):
    import torch
    from transformers import LlamaForCausalLM
    torch.cuda.empty_cache()
    m = LlamaForCausalLM.from_pretrained(model, torch_dtype=torch.bfloat16, attn_implementation="sdpa").cuda()
    m.gradient_checkpointing_enable()
    m.config.use_cache = False
    m.train()
    ids = torch.tensor(toks_np, dtype=torch.long, device="cuda")

    def step():
        m.zero_grad(set_to_none=True)
        out = m(input_ids=ids[:, :-1], labels=None)
        logits = out.logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                                 ids[:, 1:].reshape(-1))
        loss.backward()
        return float(loss)

    step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    secs = []
    loss = 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        loss = step()
        torch.cuda.synchronize()
        secs.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated()
    del m
    torch.cuda.empty_cache()
    return statistics.median(secs), peak, loss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--longctx", required=True)
    ap.add_argument("--T", default="16384,32768")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--timeout", type=int, default=240, help="seconds per longctx run")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("LCX_TMP", "/tmp")) as tmp:
        cfg = os.path.join(tmp, "config.json")
        with open(cfg, "w") as f:
            json.dump(LLAMA_1B, f)
        model = os.path.join(tmp, "llama-1b")
        t0 = time.time()
        subprocess.run([args.longctx, "init", "--config", cfg, "--out", model, "--seed", "1"], check=True,
                       capture_output=True)
        print(f"init: {time.time() - t0:.1f} s, N = {n_params(LLAMA_1B) / 1e9:.3f} B parameters", flush=True)
        for T in [int(t) for t in args.T.split(",")]:
            toks = np.random.default_rng(T).integers(0, LLAMA_1B["vocab_size"], size=(1, T + 1)).astype(np.int32)
            tpath = os.path.join(tmp, f"toks{T}.npy")
            np.save(tpath, toks)
            row = {"T": T, "plan": None, "longctx_tok_s": None, "mfu": None, "hf_tok_s": None,
                   "longctx_peak_gib": None, "hf_peak_gib": None}
            try:
                s, peak, plan, loss = run_longctx(args.longctx, model, tpath, args.repeat, args.timeout)
                row.update(plan=plan, longctx_tok_s=T / s, mfu=T / s * step_flops(LLAMA_1B, T) / T / PEAK_FLOPS,
                           longctx_peak_gib=peak / 2**30, longctx_loss=loss)
            except Exception as e:  # noqa: BLE001 - report and go on
                row["longctx_error"] = str(e)[:500]
            try:
                s, peak, loss = run_hf(model, toks, args.repeat)
                row.update(hf_tok_s=T / s, hf_peak_gib=peak / 2**30, hf_loss=loss)
            except Exception as e:  # noqa: BLE001
                row["hf_error"] = str(e)[:500]
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{'T':>7} {'longctx tok/s':>14} {'MFU':>6} {'peak GiB':>9} {'HF tok/s':>9} {'peak GiB':>9} "
          f"{'speed-up':>8}  plan")
    for r in rows:
        f = lambda v, fmt: format(v, fmt) if v is not None else "-"  # noqa: E731
        sp = r["longctx_tok_s"] / r["hf_tok_s"] if r["longctx_tok_s"] and r["hf_tok_s"] else None
        print(f"{r['T']:>7} {f(r['longctx_tok_s'], '14.0f')} {f(r['mfu'], '6.1%')} {f(r['longctx_peak_gib'], '9.1f')} "
              f"{f(r['hf_tok_s'], '9.0f')} {f(r['hf_peak_gib'], '9.1f')} {f(sp, '8.2f')}  {r['plan']}")
    print("MFU = tok/s x (6N + 6 L C T) / 989e12; HF: bf16, SDPA, gradient checkpointing; longctx: bf16 math, "
          "fp32 storage, --plan auto")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0 if all(r["longctx_tok_s"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
