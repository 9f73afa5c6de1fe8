#!/usr/bin/env python3
"""The whole model on the GPU: `longctx grad --device cuda` (fp32) against the CPU backend under every
single-device plan, and against Hugging Face LlamaForCausalLM on the same weights and tokens (fp32 on the
GPU, TF32 off). Run on a GPU machine (scripts/gpu_check.sh part `grad`):

    python3 tests/gpu/grad_parity.py --longctx build-gpu/bin/longctx [--json OUT.json]

Prints one line per check and `N passed, M failed` last; exits 1 on any failure.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

CPU_RTOL = 1e-4   # ||g_gpu - g_cpu|| / ||g_cpu|| per tensor (the bound)
BF16_RTOL = 2e-2  # bf16 math: each gradient's relative-norm error, and the loss's relative error 1e-2
BF16_LOSS_RTOL = 1e-2
HF_RTOL = 1e-4
LOSS_RTOL = 1e-5

CONFIGS = {
    "gqa_llama3_tied": dict(
        architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=512, hidden_size=128,
        intermediate_size=352, num_hidden_layers=3, num_attention_heads=8, num_key_value_heads=2,
        max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=500000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 256},
        tie_word_embeddings=True, initializer_range=0.02, torch_dtype="float32"),
    "mha_untied_hs128": dict(
        architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=1000, hidden_size=256,
        intermediate_size=512, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
        max_position_embeddings=4096, rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False,
        initializer_range=0.05, torch_dtype="float32"),
    # q/k/v biases and a sliding window from block 1 on (the CUDA bias and window kernels)
    "qwen2_biases_window": dict(
        architectures=["Qwen2ForCausalLM"], model_type="qwen2", vocab_size=512, hidden_size=128,
        intermediate_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=4096, rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False,
        use_sliding_window=True, sliding_window=48, max_window_layers=1, initializer_range=0.05,
        torch_dtype="float32"),
}

PLANS = {
    "plain": ["--recompute", "none"],
    "recompute_full": ["--recompute", "full"],
    "recompute_selective": ["--recompute", "selective"],
    "offload_host": ["--recompute", "full", "--offload", "host"],
    "offload_disk": ["--recompute", "full", "--offload", "disk"],
    "mlp_tiles": ["--recompute", "selective", "--mlp-tiles", "4"],
    "loss_tiles": ["--recompute", "none", "--loss-tiles", "3"],
    "all_at_once": ["--recompute", "full", "--offload", "host", "--mlp-tiles", "3", "--loss-tiles", "5"],
    "seco": ["--chunk-mode", "seco", "--chunk-size", "64"],
    "seco_pages_host": ["--chunk-mode", "seco", "--chunk-size", "64", "--offload", "host"],
    "seco_pages_disk": ["--chunk-mode", "seco", "--chunk-size", "64", "--offload", "disk"],
    "spaco": ["--chunk-mode", "spaco", "--chunk-size", "64", "--chunk-budget", "2"],
    "lora": ["--lora-rank", "8", "--recompute", "full"],
    "lora_seco": ["--lora-rank", "8", "--chunk-mode", "seco", "--chunk-size", "64"],
    # the weights, gradients and AdamW state in host memory, a unit at a time on the GPU
    "offload_model": ["--offload-model", "host"],
    # the K/V cache and its gradients in bf16 (against the CPU rounding the same pages)
    "seco_kv_bf16": ["--chunk-mode", "seco", "--chunk-size", "64", "--offload", "host", "--kv-dtype", "bf16",
                     "--kv-grad-dtype", "bf16"],
}
# plans whose gradients are not the plain step's: compared with the CPU backend under the same plan
SAME_PLAN_REF = {"spaco", "lora", "lora_seco"}
# chunk modes take one sequence: their own (1, T+1) tokens, and the CPU backend under the same plan on them
CHUNKED = {p for p, f in PLANS.items() if "--chunk-mode" in f}


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def load(path):
    try:
        from safetensors.numpy import load_file
    except ImportError:  # Debian's python: the reference's own reader
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
        import llama_ref
        return {k: v.astype(np.float64) for k, v in llama_ref.read_safetensors(path)[0].items()}
    return {k: v.astype(np.float64) for k, v in load_file(path).items()}


def rel(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def hf_grads(model_dir, toks):
    import torch
    from transformers import AutoModelForCausalLM  # LlamaForCausalLM, Qwen2ForCausalLM by the config
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    m = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32,
                                             attn_implementation="eager").cuda()
    ids = torch.tensor(toks, dtype=torch.long, device="cuda")
    logits = m(input_ids=ids[:, :-1]).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1))
    loss.backward()
    g = {n: p.grad.detach().double().cpu().numpy() for n, p in m.named_parameters() if p.grad is not None}
    return float(loss), g


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--longctx", required=True)
    ap.add_argument("--json", default="")
    ap.add_argument("--device", default="cuda", help="cpu-staged checks this script's logic without a GPU "
                    "(the bf16 and Hugging Face checks then skip)")
    args = ap.parse_args()
    passed = failed = 0
    out = {"plans": {}, "cpu_fp32_max_rel": 0.0, "hf_loss_rel": None, "hf_grad_max_rel": None}

    def check(ok, what):
        nonlocal passed, failed
        passed += ok
        failed += not ok
        print(("PASS " if ok else "FAIL ") + what, flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        for ci, (name, cfg) in enumerate(CONFIGS.items()):
            d = os.path.join(tmp, name)
            os.makedirs(d)
            cpath = os.path.join(tmp, name + ".json")
            with open(cpath, "w") as f:
                json.dump(cfg, f)
            subprocess.run([args.longctx, "init", "--config", cpath, "--out", d, "--seed", str(ci + 3)], check=True,
                           capture_output=True)
            rng = np.random.default_rng(ci)
            toks = rng.integers(0, cfg["vocab_size"], size=(2, 193)).astype(np.int32)
            tpath = os.path.join(tmp, name + ".npy")
            np.save(tpath, toks)
            tpath1 = os.path.join(tmp, name + "-one.npy")
            np.save(tpath1, rng.integers(0, cfg["vocab_size"], size=(1, 257)).astype(np.int32))
            ref_path = os.path.join(tmp, name + "-cpu.safetensors")
            ref = run([args.longctx, "grad", "--model", d, "--tokens", tpath, "--out", ref_path, "--device", "cpu",
                       "--recompute", "none"])
            gref = load(ref_path)
            gpu_plain = None
            for plan, flags in PLANS.items():
                gp = os.path.join(tmp, f"{name}-{plan}.safetensors")
                try:
                    tp = tpath1 if plan in CHUNKED else tpath
                    j = run([args.longctx, "grad", "--model", d, "--tokens", tp, "--out", gp, "--device", args.device,
                             "--dtype", "fp32"] + flags)
                except Exception as e:  # noqa: BLE001 - report and go on to the next plan
                    check(False, f"{name} {plan}: {str(e)[:1500]}")
                    out["plans"][f"{name}/{plan}"] = None
                    continue
                g = load(gp)
                r, gr = ref, gref
                if plan in SAME_PLAN_REF or plan in CHUNKED:  # the CPU under the same plan and tokens
                    cp = os.path.join(tmp, f"{name}-{plan}-cpu.safetensors")
                    r = run([args.longctx, "grad", "--model", d, "--tokens", tp, "--out", cp, "--device", "cpu"]
                            + flags)
                    gr = load(cp)
                worst = max(rel(g[k], gr[k]) for k in gr)
                lrel = abs(j["loss"] - r["loss"]) / abs(r["loss"])
                out["plans"][f"{name}/{plan}"] = worst
                out["cpu_fp32_max_rel"] = max(out["cpu_fp32_max_rel"], worst)
                check(worst < CPU_RTOL and lrel < LOSS_RTOL and j.get("device") == args.device.split("-")[0],
                      f"{name} {plan}: grads max rel {worst:.2e}, loss rel {lrel:.2e} vs the CPU backend "
                      f"(device peak {j['peak_bytes']['device']} B, pool {j.get('gpu_pool_peak_bytes')} B)")
                if plan == "plain":
                    gpu_plain, gpu_loss = g, j["loss"]
            for plan in ["plain", "all_at_once"] if args.device == "cuda" else []:
                gp = os.path.join(tmp, f"{name}-{plan}-bf16.safetensors")
                try:
                    j = run([args.longctx, "grad", "--model", d, "--tokens", tpath, "--out", gp, "--device", "cuda",
                             "--dtype", "bf16"] + PLANS[plan])
                except Exception as e:  # noqa: BLE001
                    check(False, f"{name} {plan} bf16: {str(e)[:1500]}")
                    continue
                g = load(gp)
                worst = max(rel(g[k], gref[k]) for k in gref)
                lrel = abs(j["loss"] - ref["loss"]) / abs(ref["loss"])
                out["bf16_loss_rel"] = max(out.get("bf16_loss_rel") or 0.0, lrel)
                out["bf16_grad_max_rel"] = max(out.get("bf16_grad_max_rel") or 0.0, worst)
                check(worst < BF16_RTOL and lrel < BF16_LOSS_RTOL and j.get("dtype") == "bf16",
                      f"{name} {plan} bf16 math: grads max rel {worst:.2e}, loss rel {lrel:.2e} vs the CPU's fp32")
            if gpu_plain is None or args.device != "cuda":
                continue
            try:
                hl, hg = hf_grads(d, toks)
            except Exception as e:  # noqa: BLE001
                check(False, f"{name} Hugging Face: {str(e)[:1500]}")
                continue
            lrel = abs(gpu_loss - hl) / abs(hl)
            worst = max(rel(gpu_plain[k], hg[k]) for k in hg if k in gpu_plain)
            missing = [k for k in hg if k not in gpu_plain]
            out["hf_loss_rel"] = max(out["hf_loss_rel"] or 0.0, lrel)
            out["hf_grad_max_rel"] = max(out["hf_grad_max_rel"] or 0.0, worst)
            check(worst < HF_RTOL and lrel < LOSS_RTOL and not missing,
                  f"{name} vs Hugging Face {cfg['architectures'][0]} (fp32, GPU): loss rel {lrel:.2e}, grads max rel "
                  f"{worst:.2e}{', missing ' + str(missing) if missing else ''}")
    out["passed"], out["failed"] = passed, failed
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
