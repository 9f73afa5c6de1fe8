#!/usr/bin/python3
"""`longctx grad --probe` against the full step it stands for, measured side by side in one run: the
probe runs the first and the last chunk of the full-length step and extrapolates the step's time; the full
step runs every chunk. Prints both times and their ratio for SeCO with the K/V pages on the device and on
disk, and with a sliding window (where the pages a chunk reads saturate).

    /usr/bin/python3 bench/bench_probe.py [--longctx build/bin/longctx] [--seq-len 4096] [--chunk 512]
                                          [--repeat 5]

Each side is the fastest of --repeat runs: other work on the machine only slows a run, and the
extrapolation grows with every chunk time it is fed, so the fastest runs compare like with like.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=97, hidden_size=64,
              intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=65536, rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
              initializer_range=0.05)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--longctx", default=os.path.join(REPO, "build", "bin", "longctx"))
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--chunk", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        models = {}
        for name, extra in [("llama", {}), ("mistral", dict(model_type="mistral", sliding_window=a.chunk + 188))]:
            cfg = os.path.join(tmp, name + ".json")
            with open(cfg, "w") as f:
                json.dump(dict(CONFIG, **extra), f)
            models[name] = os.path.join(tmp, name)
            subprocess.run([a.longctx, "init", "--config", cfg, "--out", models[name], "--seed", "3"], check=True,
                           capture_output=True)
        toks = os.path.join(tmp, "toks.npy")
        np.save(toks, np.random.default_rng(1).integers(0, 97, size=(1, a.seq_len + 1)).astype(np.int32))
        seco = ["--chunk-mode", "seco", "--chunk-size", str(a.chunk), "--repeat", str(a.repeat)]
        disk = ["--offload", "disk", "--offload-dir", os.path.join(tmp, "off")]
        print(f"T = {a.seq_len}, {a.seq_len // a.chunk} chunks of {a.chunk}, 2-layer model; fastest of {a.repeat}")
        print(f"{'case':34} {'full step s':>12} {'probe ran s':>12} {'extrapolated s':>15} {'ratio':>7}")
        failed = False
        for name, flags, model in [("seco, pages on the device", seco, "llama"),
                                   ("seco, pages on disk", seco + disk, "llama"),
                                   (f"seco, window {a.chunk + 188}", seco, "mistral")]:
            runs = []
            for extra in ([], ["--probe"]):
                r = subprocess.run([a.longctx, "grad", "--model", models[model], "--tokens", toks] + flags + extra,
                                   capture_output=True, text=True, timeout=1800)
                if r.returncode:
                    print(f"{name}: {r.stderr.strip()[-300:]}")
                    failed = True
                    break
                runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
            if len(runs) < 2:
                continue
            full, probe = min(runs[0]["step_seconds_all"]), runs[1]
            ext = min(probe["step_seconds_extrapolated_all"])
            print(f"{name:34} {full:>12.4f} {min(probe['probe_seconds_all']):>12.4f} {ext:>15.4f} "
                  f"{ext / full:>7.3f}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
