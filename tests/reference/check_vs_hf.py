#!/usr/bin/env python3
"""The engine (and, through it, llama_ref.py's semantics) against Hugging Face transformers' own model
classes: small random Qwen2ForCausalLM, Qwen3ForCausalLM, MistralForCausalLM and LlamaForCausalLM models
(biases, q/k norms, head_dim != hidden/heads, sliding windows shorter than the sequence, YaRN, linear and
llama3 RoPE) are built with transformers, saved with save_pretrained (transformers 5 writes
rope_parameters and layer_types), run through `longctx grad`, and compared with HF's autograd in fp32:
the loss and every gradient, relative L2 error per tensor below 1e-5. The reference itself is held
against the same HF models in fp64 (llama_ref.loss_and_grads on the saved directory).

Not registered in CTest (it needs transformers and takes a minute). Run it with the repository's
`.venv-hf` (PyPI torch + transformers 5.x, CPU):

    .venv-hf/bin/python tests/reference/check_vs_hf.py --longctx build/bin/longctx [--keep] [-v]

Prints one line per model with the worst relative errors and exits 1 if any is over the tolerance.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import llama_ref  # noqa: E402

RTOL = 1e-5


def cases():
    """(name, config class, model class, config kwargs, batch, T + 1)."""
    from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config,
                              Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM)
    common = dict(vocab_size=131, hidden_size=64, intermediate_size=112, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                  initializer_range=0.1)
    return [
        ("qwen2: q/k/v biases, window on block 1, yarn", Qwen2Config, Qwen2ForCausalLM,
         dict(common, use_sliding_window=True, sliding_window=24, max_window_layers=1, tie_word_embeddings=True,
              rope_parameters=dict(rope_type="yarn", rope_theta=10000.0, factor=4.0,
                                   original_max_position_embeddings=64)), 2, 81),
        ("qwen3: q/k norms, attention_bias, head_dim 24, window on block 0 (layer_types)", Qwen3Config,
         Qwen3ForCausalLM,
         dict(common, head_dim=24, attention_bias=True, use_sliding_window=True, sliding_window=20,
              layer_types=["sliding_attention", "full_attention"], tie_word_embeddings=False,
              rope_parameters=dict(rope_type="default", rope_theta=100000.0)), 2, 73),
        ("qwen3: yarn with attention_factor and betas, no window", Qwen3Config, Qwen3ForCausalLM,
         dict(common, head_dim=16, num_key_value_heads=1,
              rope_parameters=dict(rope_type="yarn", rope_theta=50000.0, factor=8.0, attention_factor=1.2,
                                   beta_fast=16.0, beta_slow=2.0, original_max_position_embeddings=48)), 1, 97),
        ("mistral: window 17 on every block, head_dim 12, linear rope", MistralConfig, MistralForCausalLM,
         dict(common, head_dim=12, sliding_window=17,
              rope_parameters=dict(rope_type="linear", rope_theta=10000.0, factor=2.0)), 2, 65),
        ("llama: attention and MLP biases, yarn (truncate off, mscale)", LlamaConfig, LlamaForCausalLM,
         dict(common, attention_bias=True, mlp_bias=True,
              rope_parameters=dict(rope_type="yarn", rope_theta=20000.0, factor=16.0, mscale=1.0,
                                   mscale_all_dim=0.5, truncate=False, original_max_position_embeddings=32)),
         2, 65),
        ("llama: yarn with the default betas, truncation and attention factor", LlamaConfig, LlamaForCausalLM,
         dict(common, num_key_value_heads=4, max_position_embeddings=256,
              rope_parameters=dict(rope_type="yarn", rope_theta=10000.0, factor=4.0,
                                   original_max_position_embeddings=64)), 2, 65),
        ("llama: llama3 rope, GQA", LlamaConfig, LlamaForCausalLM,
         dict(common, rope_parameters=dict(rope_type="llama3", rope_theta=500.0, factor=8.0, low_freq_factor=1.0,
                                           high_freq_factor=4.0, original_max_position_embeddings=32)), 2, 65),
    ]


def build(cfg_cls, model_cls, kw, seed, d):
    torch.manual_seed(seed)
    cfg = cfg_cls(**kw)
    cfg._attn_implementation = "eager"
    model = model_cls(cfg).float()
    with torch.no_grad():  # biases and norm weights away from 0 and 1, so that they matter
        for n, p in model.named_parameters():
            if n.endswith(".bias"):
                p.normal_(0, 0.2)
            elif p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(d, safe_serialization=True)
    return model


def hf_loss_and_grads(model, inputs, labels):
    model.zero_grad(set_to_none=True)
    logits = model(input_ids=inputs).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                             ignore_index=-100)
    loss.backward()
    return loss.item(), {n: p.grad.detach().double() for n, p in model.named_parameters()}


def rel(a, b):
    den = float(np.linalg.norm(b))
    return float(np.linalg.norm(a - b)) / den if den > 0 else float(np.linalg.norm(a))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--longctx", required=True)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    import transformers
    print("transformers %s, torch %s" % (transformers.__version__, torch.__version__))
    torch.set_num_threads(2)
    tmp = tempfile.mkdtemp(prefix="longctx_vs_hf_")
    failed = 0
    try:
        for i, (name, cfg_cls, model_cls, kw, B, T1) in enumerate(cases()):
            d = os.path.join(tmp, "m%d" % i)
            model = build(cfg_cls, model_cls, kw, 100 + i, d)
            toks = np.random.default_rng(i).integers(0, kw["vocab_size"], size=(B, T1)).astype(np.int64)
            tpath = os.path.join(tmp, "t%d.npy" % i)
            np.save(tpath, toks)
            t = torch.from_numpy(toks)
            inputs, labels = t[:, :-1], t[:, 1:].clone()
            hf_loss, hf_grads = hf_loss_and_grads(model, inputs, labels)
            gpath = os.path.join(tmp, "g%d.safetensors" % i)
            r = subprocess.run([args.longctx, "grad", "--model", d, "--tokens", tpath, "--out", gpath],
                               capture_output=True, text=True, env=dict(os.environ, LONGCTX_DEVICE="cpu"))
            if r.returncode:
                print("FAIL %s: longctx grad: %s" % (name, r.stderr.strip()[-300:]))
                failed += 1
                continue
            loss = json.loads(r.stdout.strip().splitlines()[-1])["loss"]
            got = llama_ref.read_safetensors(gpath)[0]
            # the fp64 reference on the same saved directory (config.json as transformers 5 wrote it)
            cfg, params, _ = llama_ref.load_model(d)
            ref_loss, ref_grads = llama_ref.loss_and_grads(cfg, params, inputs, labels)
            names = set(hf_grads)
            errs = {n: rel(np.asarray(got[n], np.float64), hf_grads[n].numpy()) for n in names if n in got}
            ref_errs = {n: rel(ref_grads[n].numpy(), hf_grads[n].numpy()) for n in names if n in ref_grads}
            missing = sorted(names - set(got)) + sorted(set(got) - names)
            worst = max(errs.items(), key=lambda kv: kv[1])
            worst_ref = max(ref_errs.items(), key=lambda kv: kv[1])
            loss_rel, ref_loss_rel = abs(loss - hf_loss) / abs(hf_loss), abs(ref_loss - hf_loss) / abs(hf_loss)
            ok = (not missing and worst[1] < RTOL and loss_rel < RTOL and worst_ref[1] < RTOL
                  and ref_loss_rel < RTOL and len(errs) == len(ref_errs) == len(names))
            failed += 0 if ok else 1
            print("%s %s: %d tensors; longctx vs HF: loss rel %.1e, worst grad %.2e (%s); fp64 reference vs HF: "
                  "loss rel %.1e, worst grad %.2e%s" % ("PASS" if ok else "FAIL", name, len(names), loss_rel,
                                                       worst[1], worst[0], ref_loss_rel, worst_ref[1],
                                                       "; names differ: %s" % missing[:4] if missing else ""),
                  flush=True)
            if args.verbose:
                for n in sorted(errs, key=errs.get, reverse=True)[:5]:
                    print("    %-50s %.2e" % (n, errs[n]))
    finally:
        if args.keep:
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("%d failed" % failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
