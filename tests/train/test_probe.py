#!/usr/bin/python3
"""`longctx grad --probe` against the full step it stands for, on the CPU: the probe builds the full-length
step, runs only its first and last chunks, and extrapolates the step's time.

(a) its measured peaks (every tier and tag) equal the full step's, exactly, for SeCO with the K/V pages on
    the device, the host and disk, and for SpaCO;
(b) its extrapolated step time is within 35% of the full step's measured time, with and without a
    sliding window (where the pages a chunk reads saturate). Each side is the fastest of --repeat 5: other
    work on the machine only slows a run, and the extrapolation grows with every chunk time it is fed
    (both coefficients of the fit are >= 0), so the fastest runs compare like with like; up to two retries
    of both when a loaded machine still puts it outside;
(c) the output says what was measured and what extrapolated; a whole-sequence plan and --out are refused
    in one line.

    /usr/bin/python3 tests/train/test_probe.py --longctx build/bin/longctx

Prints one line per check and a final `N passed, M failed`; exits 1 on any failure.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

CONFIG = dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=97, hidden_size=64,
              intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=8192, rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
              initializer_range=0.05)
T, TC = 4096, 512  # 8 chunks
SECO = ["--chunk-mode", "seco", "--chunk-size", str(TC)]
TOLERANCE = 0.35


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--longctx", required=True)
    args = ap.parse_args()
    exe = args.longctx
    results = []

    def check(name, ok, detail):
        results.append(ok)
        print(("PASS " if ok else "FAIL ") + f"{name}: {detail}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        models = {}
        for name, extra in [("llama", {}), ("mistral", dict(model_type="mistral", sliding_window=700))]:
            cfg = os.path.join(tmp, name + ".json")
            with open(cfg, "w") as f:
                json.dump(dict(CONFIG, **extra), f)
            models[name] = os.path.join(tmp, name)
            subprocess.run([exe, "init", "--config", cfg, "--out", models[name], "--seed", "3"], check=True,
                           capture_output=True)
        toks = os.path.join(tmp, "toks.npy")
        np.save(toks, np.random.default_rng(1).integers(0, CONFIG["vocab_size"], size=(1, T + 1)).astype(np.int32))

        def grad(flags, model="llama"):
            r = subprocess.run([exe, "grad", "--model", models[model], "--tokens", toks] + flags,
                               capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                return None, r.stdout, r.stderr.strip()
            return json.loads(r.stdout.strip().splitlines()[-1]), r.stdout, r.stderr

        # (a) peaks: the probe holds what the full step holds, on every tier and tag
        disk = ["--offload", "disk", "--offload-dir", os.path.join(tmp, "off")]
        cases = {"seco, pages on the device": SECO,
                 "seco, pages on the host": SECO + ["--offload", "host"],
                 "seco, pages on disk": SECO + disk,
                 "spaco 3 of 8, pages on the host": ["--chunk-mode", "spaco", "--chunk-size", str(TC),
                                                     "--chunk-budget", "3", "--offload", "host"]}
        for name, flags in cases.items():
            full, _, ef = grad(flags)
            probe, out, ep = grad(flags + ["--probe"])
            if full is None or probe is None:
                check(f"peaks, {name}", False, f"full: {ef[-300:] if full is None else 'ok'}; "
                      f"probe: {ep[-300:] if probe is None else 'ok'}")
                continue
            same = probe["peak_bytes"] == full["peak_bytes"]
            check(f"peaks, {name}", same and probe["peak_bytes"]["device"] > 0,
                  f"device {probe['peak_bytes']['device']} vs {full['peak_bytes']['device']} B, host "
                  f"{probe['peak_bytes']['host']} vs {full['peak_bytes']['host']} B, disk "
                  f"{probe['peak_bytes']['disk']} vs {full['peak_bytes']['disk']} B"
                  + ("" if same else f"; probe {probe['peak_bytes']} full {full['peak_bytes']}"))
            # (c) labelled: what ran and what was extrapolated
            labelled = (probe["how"] == "probe" and full["how"] == "full" and probe["probe_chunks"] == [0, 7]
                        and probe["chunks"] == 8 and sorted(probe["chunk_seconds"]) == ["0", "7"]
                        and all(v["forward"] > 0 and v["backward"] > 0 for v in probe["chunk_seconds"].values())
                        and probe["peak_bytes_how"] == "measured" and probe["loss"] is None
                        and "step_seconds" not in probe and probe["step_seconds_extrapolated"] > 0
                        and probe["tokens_per_second_extrapolated"] > 0 and "EXTRAPOLATED" in out
                        and probe["predicted_peak_bytes"]["device"] > 0)
            check(f"labels, {name}", labelled,
                  f"how {probe.get('how')}, chunks {probe.get('probe_chunks')}, "
                  f"extrapolated {probe.get('step_seconds_extrapolated', 0):.3f} s, backward share "
                  f"{probe['extrapolation']['backward_share']}")
            if "spaco" in name:
                check(f"spaco backward share, {name}", probe["extrapolation"]["backward_share"] == 3 / 8,
                      str(probe["extrapolation"]))

        # (b) time: the extrapolation against the full step
        for name, flags, model in [("seco", SECO, "llama"),
                                   ("seco, pages on disk", SECO + disk, "llama"),
                                   ("seco, sliding window of 700 (2 pages)", SECO, "mistral")]:
            for attempt in range(3):
                full, _, ef = grad(flags + ["--repeat", "5"], model)
                probe, _, ep = grad(flags + ["--repeat", "5", "--probe"], model)
                if full is None or probe is None:
                    ok, detail = False, f"{ef[-300:] if full is None else ''} {ep[-300:] if probe is None else ''}"
                    break
                measured = min(full["step_seconds_all"])
                extrap = min(probe["step_seconds_extrapolated_all"])
                rel = extrap / measured - 1
                ok = abs(rel) <= TOLERANCE
                detail = (f"extrapolated {extrap:.4f} s vs measured {measured:.4f} s ({rel:+.1%}); the probe "
                          f"ran {min(probe['probe_seconds_all']):.4f} s (fastest of 5 each); chunk seconds "
                          f"{probe['chunk_seconds']}"
                          + (f" (attempt {attempt + 1})" if attempt else ""))
                if ok:
                    break
            check(f"time, {name}", ok, detail)

        # (c) refusals, one line each
        for flags, needle in [(["--probe"], "--probe needs a chunk mode"),
                              (["--probe", "--recompute", "none"], "--probe needs a chunk mode"),
                              (SECO + ["--probe", "--out", os.path.join(tmp, "g.safetensors")],
                               "--probe computes no usable gradient")]:
            j, _, err = grad(flags)
            ok = j is None and needle in err and len(err.strip().splitlines()) == 1
            check(f"refused: {' '.join(flags[-3:])}", ok, err.strip()[:240])
    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
