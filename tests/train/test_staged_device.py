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
        # choices that cannot run here are refused in one line naming the flag
        info = subprocess.run([args.longctx, "info"], capture_output=True, text=True).stdout
        refusals = [(["--dtype", "bf16", "--device", "cpu"], "dtype bf16 is the GPU's math"),
                    (["--device", "tpu"], "expected cpu, cuda or auto")]
        if "cuda device 0" not in info:  # no GPU here: asking for one says why
            refusals.append((["--device", "cuda"], "--device cuda: "))
        for flags, needle in refusals:
            r = subprocess.run([args.longctx, "grad", "--model", model, "--tokens", tpath] + flags,
                               capture_output=True, text=True)
            ok = r.returncode == 1 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1
            passed += ok
            failed += not ok
            print(("PASS " if ok else "FAIL ") + f"refused: {' '.join(flags)}: {r.stderr.strip()[:200]}", flush=True)
        for name, ok, detail in train_checks(args.longctx, tmp, tpath, load):
            passed += ok
            failed += not ok
            print(("PASS " if ok else "FAIL ") + f"staged device, {name}: {detail}", flush=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


TRAIN = """
model:
  init: {vocab_size: 61, hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2,
         num_attention_heads: 4, num_key_value_heads: 2, rope_theta: 10000.0, tie_word_embeddings: false}
data: {kind: tokens, path: %(tokens)s}
seq_len: 24
batch_size: 2
steps: %(steps)d
lr: 0.003
warmup_steps: 1
save_every: 2
seed: 3
out_dir: %(out)s
"""


def train_checks(exe, tmp, tokens, load):
    """`train` with the staged device tier: the same losses and final weights as the CPU, a checkpoint
    written by it resumes on the CPU bit-exactly, LoRA too, and eval/generate agree."""
    big = os.path.join(tmp, "train-tokens.npy")
    np.save(big, np.random.default_rng(2).integers(0, 61, size=(4000,)).astype(np.int32))

    def train(name, device, steps, extra=(), resume=False):
        out = os.path.join(tmp, name)
        cfg = os.path.join(tmp, name + ".yaml")
        with open(cfg, "w") as f:
            f.write(TRAIN % dict(tokens=big, steps=steps, out=out))
        args = [exe, "train", cfg, f"device={device}"] + list(extra) + (["resume=true"] if resume else [])
        r = subprocess.run(args, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            return out, None, r.stderr.strip()[-500:]
        with open(os.path.join(out, "metrics.jsonl")) as f:
            return out, [json.loads(x)["loss"] for x in f], ""

    out = []
    a, la, ea = train("t-cpu", "cpu", 4)
    b, lb, eb = train("t-staged", "cpu-staged", 4)
    ok = la is not None and la == lb
    wa = load(os.path.join(a, "model.safetensors")) if ok else {}
    wb = load(os.path.join(b, "model.safetensors")) if ok else {}
    ok = ok and all(np.array_equal(wa[k], wb[k]) for k in wa)
    out.append(("train: losses and final weights", ok, f"{la} vs {lb} {ea}{eb}"))
    # a checkpoint of the staged run (step 2) resumed on the CPU gives the CPU run's steps 3-4
    c, lc, ec = train("t-cross", "cpu-staged", 4, ["stop_after=2"])
    c, lc, ec = train("t-cross", "cpu", 4, resume=True)
    out.append(("train: a staged checkpoint resumes on the CPU", lc == la, f"{lc} vs {la} {ec}"))
    lora = ["lora.rank=4"]
    _, l1, e1 = train("l-cpu", "cpu", 3, lora)
    _, l2, e2 = train("l-staged", "cpu-staged", 3, lora)
    out.append(("train with LoRA", l1 is not None and l1 == l2, f"{l1} vs {l2} {e1}{e2}"))
    for dev in ["cpu", "cpu-staged"]:
        r = subprocess.run([exe, "generate", "--model", a, "--prompt", "!#(", "--max-new", "6", "--device", dev],
                           capture_output=True, text=True, timeout=120)
        e = subprocess.run([exe, "eval", "--model", a, "--tokens", tokens, "--seq-len", "16", "--device", dev],
                           capture_output=True, text=True, timeout=120)
        out.append((f"generate and eval run ({dev})", r.returncode == 0 and e.returncode == 0,
                    (r.stdout.strip() + " | " + e.stdout.strip().splitlines()[-1] if e.returncode == 0 else
                     r.stderr[-300:] + e.stderr[-300:])))
    same = out[-1][2] == out[-2][2]
    out.append(("generate and eval agree on cpu and cpu-staged", same, ""))
    return out


if __name__ == "__main__":
    sys.exit(main())
