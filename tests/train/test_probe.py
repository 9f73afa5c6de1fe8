#!/usr/bin/python3
"""`longctx grad --probe` against the full step it stands for, on the CPU: the probe builds the full-length
step, runs only its first and last chunks, and extrapolates the step's time.

(a) its measured peaks (every tier and tag) equal the full step's, exactly, for SeCO with the K/V pages on
    the device, the host and disk, and for SpaCO;
(b) its extrapolated step time is the stated formula applied to the chunk seconds it measured (how close
    that comes to a full step is measured by bench/bench_probe.py, side by side, not asserted here);
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

        # (b) the extrapolation is the stated formula on the measured chunk seconds (no window: a pass over k
        # chunks is k * (first + last) / 2; the step adds what ran outside the chunks). How close it comes to
        # a full step's measured time is a benchmark's question (bench/bench_probe.py), not a test's.
        probe, _, ep = grad(SECO + ["--probe"])
        if probe is None:
            check("extrapolation formula", False, ep[-300:])
        else:
            cs, ex, k = probe["chunk_seconds"], probe["extrapolation"], probe["chunks"]
            f0, fl = cs["0"]["forward"], cs[str(k - 1)]["forward"]
            b0, bl = cs["0"]["backward"], cs[str(k - 1)]["backward"]
            want_f, want_b = k * (f0 + fl) / 2, k * (b0 + bl) / 2
            total = ex["forward_s"] + ex["backward_s"] + ex["outside_chunks_s"]

            def near(a, b):
                return abs(a - b) <= 1e-9 * max(abs(b), 1e-12)

            check("extrapolation formula: forward k(t0 + t_last)/2, backward the same, plus the rest",
                  near(ex["forward_s"], want_f) and near(ex["backward_s"], want_b)
                  and near(probe["step_seconds_extrapolated"], total)
                  and near(probe["tokens_per_second_extrapolated"], T / total),
                  f"forward {ex['forward_s']} vs {want_f}, backward {ex['backward_s']} vs {want_b}, "
                  f"step {probe['step_seconds_extrapolated']} vs {total}")

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
