#!/usr/bin/python3
"""The GPU backend's staging paths, checked on the CPU: `grad --device cpu-staged` runs the CPU kernels on a
device tier that host code must treat as GPU memory (inputs, rope rows, labels, weights, LoRA adapters and
gradients go through host copies, offload and K/V pages through the allocators' copies and pinned staging),
so every single-device plan must give the plain CPU run's loss and gradients exactly.

    /usr/bin/python3 tests/train/test_staged_device.py --longctx build/bin/longctx

Prints one line per check and a final `N passed, M failed`; exits 1 on any failure.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

CONFIG = dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=61, hidden_size=32,
              intermediate_size=48, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=512, rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
              initializer_range=0.05)

PLANS = {
    "plain": ["--recompute", "none"],
    "recompute full, offload host": ["--recompute", "full", "--offload", "host"],
    "selective, offload disk, mlp tiles": ["--recompute", "selective", "--offload", "disk", "--mlp-tiles", "3"],
    "loss tiles": ["--loss-tiles", "4"],
    "seco": ["--chunk-mode", "seco", "--chunk-size", "16"],
    "seco, pages on the host": ["--chunk-mode", "seco", "--chunk-size", "16", "--offload", "host"],
    "seco, pages on disk": ["--chunk-mode", "seco", "--chunk-size", "16", "--offload", "disk"],
    "spaco": ["--chunk-mode", "spaco", "--chunk-size", "16", "--chunk-budget", "2"],
    "lora": ["--lora-rank", "4", "--recompute", "full"],
    "lora, seco, offload host": ["--lora-rank", "4", "--chunk-mode", "seco", "--chunk-size", "16",
                                 "--offload", "host"],
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--longctx", required=True)
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
    import llama_ref  # noqa: E402 (its safetensors reader)

    def load(path):
        return llama_ref.read_safetensors(path)[0]
    passed = failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "config.json")
        with open(cfg, "w") as f:
            json.dump(CONFIG, f)
        model = os.path.join(tmp, "model")
        subprocess.run([args.longctx, "init", "--config", cfg, "--out", model, "--seed", "5"], check=True,
                       capture_output=True)
        toks = np.random.default_rng(1).integers(0, CONFIG["vocab_size"], size=(1, 58)).astype(np.int32)
        tpath = os.path.join(tmp, "toks.npy")
        np.save(tpath, toks)
        for name, flags in PLANS.items():
            res = {}
            for dev in ["cpu", "cpu-staged"]:
                out = os.path.join(tmp, f"g-{dev}.safetensors")
                r = subprocess.run([args.longctx, "grad", "--model", model, "--tokens", tpath, "--out", out,
                                    "--device", dev] + flags, capture_output=True, text=True)
                if r.returncode != 0:
                    res[dev] = (None, r.stderr.strip()[-600:])
                    continue
                res[dev] = (json.loads(r.stdout.strip().splitlines()[-1]), load(out))
            (jc, gc), (js, gs) = res["cpu"], res["cpu-staged"]
            if jc is None or js is None:
                ok, detail = False, f"cpu: {gc if jc is None else 'ok'}; staged: {gs if js is None else 'ok'}"
            else:
                diff = max(float(np.max(np.abs(gc[k] - gs[k]))) for k in gc)
                staged = js["peak_bytes"]["host"] > jc["peak_bytes"]["host"]  # the host copies were made
                ok = jc["loss"] == js["loss"] and diff == 0.0 and sorted(gc) == sorted(gs) and staged
                detail = (f"loss {jc['loss']:.8f} vs {js['loss']:.8f}, max |grad diff| {diff:.3g}, {len(gc)} tensors,"
                          f" host peak {jc['peak_bytes']['host']} -> {js['peak_bytes']['host']} B")
            passed += ok
            failed += not ok
            print(("PASS " if ok else "FAIL ") + f"staged device, {name}: {detail}", flush=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
