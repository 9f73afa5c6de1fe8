#!/usr/bin/python3
"""`longctx train` end to end: bit-exact resume, survival of kill -9 at random
moments (also during saves), metrics.jsonl, config errors, export and eval.

    /usr/bin/python3 tests/train/test_train_cli.py --longctx build/bin/longctx [--keep]

Prints one line per check and a final `N passed, M failed`; exits 1 on any failure.
"""
import argparse
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

RESULTS = []


def check(name, ok, detail=""):
    RESULTS.append(ok)
    print(("PASS " if ok else "FAIL ") + name + (": " + detail if detail else ""), flush=True)


CONFIG = """
model:
  init: {vocab_size: 64, hidden_size: 32, intermediate_size: 56, num_hidden_layers: 2,
         num_attention_heads: 4, num_key_value_heads: 2, rope_theta: 10000.0, tie_word_embeddings: true}
data:
  kind: tokens
  path: %(tokens)s
seq_len: 48
batch_size: 2
grad_accum: 2
steps: %(steps)d
lr: 0.003
min_lr: 0.0003
warmup_steps: 3
save_every: 1
keep_last: 2
seed: 7
out_dir: %(out)s
"""


def write_config(d, out, steps, tokens, extra=""):
    p = os.path.join(d, os.path.basename(out) + ".yaml")
    with open(p, "w") as f:
        f.write(CONFIG % dict(out=out, steps=steps, tokens=tokens) + extra)
    return p


def losses(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    return [(r["step"], r["loss"]) for r in rows]


def run(exe, args, **kw):
    return subprocess.run([exe] + args, capture_output=True, text=True, timeout=600, **kw)


def test_straight_vs_resumed(exe, d, tokens):
    steps = 12
    full = os.path.join(d, "full")
    r = run(exe, ["train", write_config(d, full, steps, tokens)])
    check("train runs", r.returncode == 0, r.stderr.strip()[-300:])
    ref = losses(full)
    check("metrics.jsonl has one valid JSON object per step", [s for s, _ in ref] == list(range(1, steps + 1)))
    m = json.loads(open(os.path.join(full, "metrics.jsonl")).readline())
    keys = {"step", "loss", "lr", "grad_norm", "tokens_per_s", "mfu", "peak_bytes"}
    check("metrics lines carry the figures", keys <= set(m), str(sorted(m)))
    check("effective config saved", os.path.exists(os.path.join(full, "config.yaml")))
    check("final model exported", os.path.exists(os.path.join(full, "model.safetensors"))
          and os.path.exists(os.path.join(full, "config.json")))
    ck = sorted(os.listdir(os.path.join(full, "checkpoints")))
    check("keep_last prunes old checkpoints", ck == ["step_00000011", "step_00000012"], str(ck))

    half = os.path.join(d, "half")
    cfg = write_config(d, half, steps, tokens)
    r1 = run(exe, ["train", cfg, "stop_after=6"])
    r2 = run(exe, ["train", cfg, "resume=true"])
    got = losses(half)
    check("N straight == N/2 + resume + N/2, bit for bit", got == ref and r2.returncode == 0,
          "first difference: %s" % next(((a, b) for a, b in zip(got, ref) if a != b), None))
    return ref


def rows(out):
    try:
        with open(os.path.join(out, "metrics.jsonl")) as f:
            return f.read().count("\n")
    except OSError:
        return 0


def test_kill9(exe, d, tokens, ref):
    """Kills are placed by progress, not by wall time, so they land mid-run on
    fast and slow machines alike: each run is killed once metrics.jsonl has
    reached a random row (a save follows every step, so many kills hit a
    save), after a random extra delay of up to a few milliseconds."""
    steps = len(ref)
    out = os.path.join(d, "killed")
    cfg = write_config(d, out, steps, tokens)
    rng = random.Random(1234)
    kills = 0
    for attempt in range(7):  # six runs killed at random moments, then one to the end
        p = subprocess.Popen([exe, "train", cfg, "resume=true"], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        if attempt < 6:
            target = min(steps - 1, rows(out) + rng.randint(0, 2))
            deadline = time.time() + 600
            while p.poll() is None and rows(out) < target and time.time() < deadline:
                time.sleep(0.0005)
            time.sleep(rng.uniform(0, 0.004))
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()
                kills += 1
                continue
        else:
            p.wait(timeout=600)
        if p.returncode != 0:
            check("killed run resumes", False, p.stderr.read()[-300:])
            return
        if attempt < 6:
            continue  # finished before the kill landed; the next run resumes from the end
        break
    got = losses(out)
    check("kill -9 x%d then resume: the losses of an uninterrupted run" % kills,
          kills >= 3 and got == ref, "kills=%d, %d vs %d rows" % (kills, len(got), len(ref)))


def test_errors(exe, d, tokens):
    cases = [
        ("unknown key", ["seq_lenn=5"], "seq_lenn"),
        ("wrong type", ["steps=many"], "steps"),
        ("missing data file", ["data.path=/nonexistent/tokens.npy"], "nonexistent"),
        ("token beyond vocab", ["model.init.vocab_size=10"], "vocab"),
    ]
    for name, over, word in cases:
        out = os.path.join(d, "err")
        r = run(exe, ["train", write_config(d, out, 2, tokens)] + over)
        lines = [l for l in r.stderr.strip().splitlines() if l]
        check("error: " + name, r.returncode == 1 and len(lines) == 1 and word in lines[0],
              "rc=%d stderr=%r" % (r.returncode, r.stderr[-300:]))
    bad = os.path.join(d, "bad.yaml")
    with open(bad, "w") as f:
        f.write("seq_len: [1, 2\n")
    r = run(exe, ["train", bad])
    check("error: malformed YAML", r.returncode == 1 and "bad.yaml" in r.stderr, r.stderr[-200:])
    r = run(exe, ["train", os.path.join(d, "missing.yaml")])
    check("error: missing config", r.returncode == 1 and "missing.yaml" in r.stderr, r.stderr[-200:])


def test_eval_generate(exe, d, tokens):
    model = os.path.join(d, "full")
    r = run(exe, ["eval", "--model", model, "--tokens", tokens, "--seq-len", "32", "--max-windows", "4"])
    ok = r.returncode == 0 and json.loads(r.stdout.strip().splitlines()[-1])["perplexity"] > 1
    check("eval perplexity", ok, r.stderr[-200:])
    r = run(exe, ["generate", "--model", model, "--prompt", "12", "--max-new", "5", "--tokenizer", ""])
    check("generate", r.returncode == 0, r.stderr[-200:])


def close(a, b, rtol=1e-5):
    return len(a) == len(b) and all(abs(x - y) <= rtol * abs(y) for x, y in zip(a, b))


def test_plans(exe, d, tokens, ref):
    """Plan keys in `train` (same words as the plan flags) give the default plan's losses."""
    out = os.path.join(d, "plan-none")
    r = run(exe, ["train", write_config(d, out, 12, tokens), "stop_after=4", "recompute=none", "offload=host",
                  "mlp_tiles=auto", "loss_tiles=3"])
    got = [l for _, l in losses(out)] if r.returncode == 0 else []
    check("train with recompute none, offload host, tiles: the default plan's losses",
          close(got, [l for _, l in ref[:4]]), r.stderr[-300:] + " %r vs %r" % (got, ref[:4]))
    outs = {}
    for name, extra in (("b1", []), ("seco", ["chunk_mode=seco", "chunk_size=20", "offload=disk"])):
        outs[name] = os.path.join(d, "plan-" + name)
        r = run(exe, ["train", write_config(d, outs[name], 12, tokens), "stop_after=3", "batch_size=1",
                      "grad_accum=3"] + extra)
        check("train batch 1 (%s) runs" % name, r.returncode == 0, r.stderr[-300:])
    a, b = [l for _, l in losses(outs["b1"])], [l for _, l in losses(outs["seco"])]
    check("train with SeCO (chunks of 20 of 48, K/V on disk): the whole-sequence losses", close(b, a),
          "%r vs %r" % (b, a))
    # chunk modes take any batch size: the rows run one after another under one normaliser
    for name, extra in (("seco-b2", ["chunk_mode=seco", "chunk_size=20"]),
                        ("spaco-b2-all", ["chunk_mode=spaco", "chunk_size=20", "chunk_budget=3"])):
        out = os.path.join(d, "plan-" + name)
        r = run(exe, ["train", write_config(d, out, 12, tokens), "stop_after=3"] + extra)
        got = [l for _, l in losses(out)] if r.returncode == 0 else []
        check("train batch 2 x grad_accum 2 with %s: the whole-sequence losses" % name,
              close(got, [l for _, l in ref[:3]]), r.stderr[-300:] + " %r vs %r" % (got, ref[:3]))
    # a checkpoint of another run in the same out_dir is refused, not silently continued
    other = os.path.join(d, "plan-b1")  # holds checkpoints of a batch-1 run with seed 7
    r = run(exe, ["train", write_config(d, other, 12, tokens), "resume=true", "seed=8", "batch_size=1"])
    lines = [l for l in r.stderr.strip().splitlines() if l]
    check("resume refuses a checkpoint of another run (seed differs)",
          r.returncode == 1 and len(lines) == 1 and "another model, data, seed" in lines[0], r.stderr[-300:])
    cases = [
        ("plan: bad choice", ["recompute=some"], "recompute"),
        ("plan: clash", ["chunk_budget=2"], "chunk-budget"),
        ("plan: cannot fit", ["recompute=none", "mlp_tiles=1", "device_mem=590KiB"], "nearest plan that fits"),
    ]
    for name, over, word in cases:
        r = run(exe, ["train", write_config(d, os.path.join(d, "err"), 2, tokens)] + over)
        lines = [l for l in r.stderr.strip().splitlines() if l]
        check("error: " + name, r.returncode == 1 and len(lines) == 1 and word in lines[0], r.stderr[-300:])
    # decay_steps: warm-up 3, cosine from 0.003 down to min_lr 0.0003 at step 6, flat after
    out = os.path.join(d, "decay")
    r = run(exe, ["train", write_config(d, out, 8, tokens), "decay_steps=6", "batch_size=1", "grad_accum=1"])
    lrs = []
    if r.returncode == 0:
        with open(os.path.join(out, "metrics.jsonl")) as f:
            lrs = [json.loads(line)["lr"] for line in f if line.strip()]
    want = [0.003 * (i + 1) / 3 for i in range(3)] + [
        0.0003 + 0.5 * 0.0027 * (1 + math.cos(math.pi * min(1.0, (i - 3) / 3))) for i in range(3, 8)]
    check("decay_steps: warm-up, cosine to min_lr at that step, then min_lr", len(lrs) == 8 and all(
        abs(a - b) <= 1e-12 for a, b in zip(lrs, want)), r.stderr[-300:] + " %r vs %r" % (lrs, want))
    r = run(exe, ["train", write_config(d, os.path.join(d, "auto"), 2, tokens), "plan=auto", "device_mem=2MiB"])
    check("train plan=auto in a small device budget", r.returncode == 0 and "plan for 2 x 48" in r.stdout,
          r.stderr[-300:])


def test_plan_vs_grad(exe, d):
    """`longctx plan --json` predicts the peak bytes `longctx grad` measures, tier by tier and tag by tag."""
    model = os.path.join(d, "full")
    toks = os.path.join(d, "grad-tokens.npy")
    np.save(toks, np.random.default_rng(1).integers(0, 64, size=(1, 301)).astype(np.int32))
    toks2 = os.path.join(d, "grad-tokens2.npy")
    np.save(toks2, np.random.default_rng(2).integers(0, 64, size=(2, 301)).astype(np.int32))
    for flags in (["--recompute", "none"], ["--recompute", "selective", "--offload", "host", "--mlp-tiles", "3"],
                  ["--chunk-mode", "seco", "--chunk-size", "64", "--offload", "disk"],
                  ["--chunk-mode", "seco", "--chunk-size", "64", "--batch", "2"],
                  ["--chunk-mode", "seco", "--chunk-size", "64", "--offload", "host", "--kv-dtype", "bf16",
                   "--kv-grad-dtype", "bf16"],
                  ["--device", "cpu-staged", "--chunk-mode", "seco", "--chunk-size", "64", "--offload", "disk"],
                  ["--device", "cpu-staged", "--offload", "host", "--offload-model", "host"],
                  ["--offload-model", "host"], ["--offload-model", "host", "--chunk-mode", "seco", "--chunk-size", "64"]):
        b2 = "--batch" in flags
        flags = [f for f in flags if f not in ("--batch", "2")]
        g = run(exe, ["grad", "--model", model, "--tokens", toks2 if b2 else toks] + flags)
        p = run(exe, ["plan", "--model", model, "--seq-len", "300", "--json", "--batch", "2" if b2 else "1",
                      "--rates", '{"gemm_gflops": 10, "attn_gflops": 5}'] + flags)
        flags = flags + (["(batch 2)"] if b2 else [])
        if g.returncode or p.returncode:
            check("plan vs grad " + " ".join(flags), False, (g.stderr + p.stderr)[-300:])
            continue
        got = json.loads(g.stdout.strip().splitlines()[-1])["peak_bytes"]
        want = json.loads(p.stdout.strip().splitlines()[-1])["peak_bytes"]
        bad = [(t, g_, want["tags"][t].get(k)) for t in want["tags"] for k, g_ in got["tags"][t].items()
               if abs(g_ - want["tags"][t].get(k, 0)) > 0.05 * want["tags"][t].get(k, 0)]
        # --offload-model: plan adds the peaks of the live unit's weights and gradients to the activations'
        # peak, which come at other moments: the device total may be over (never under) by those two
        slack = {"device": want["tags"]["device"].get("weights", 0) + want["tags"]["device"].get("grads", 0)
                 if "--offload-model" in flags else 0}
        bad += [(t, got[t], want[t]) for t in ("device", "host", "disk")
                if got[t] - want[t] > 0.05 * want[t] or want[t] - got[t] > 0.05 * want[t] + slack.get(t, 0)]
        check("plan --json predicts grad's peak bytes within 5%: " + " ".join(flags), not bad, str(bad))


def test_plan_for_a_gpu(exe, d):
    """`plan --device cuda --dtype bf16` on a machine without one (given rates and a budget): the GPU's layout
    and math as `grad --device cuda` would run them, the K/V cache in bf16."""
    model = os.path.join(d, "full")
    args = ["plan", "--model", model, "--seq-len", "4096", "--json", "--chunk-mode", "seco", "--chunk-size", "512",
            "--offload", "host", "--device-mem", "1GiB", "--rates", '{"gemm_gflops": 10, "attn_gflops": 5}']
    r16 = run(exe, args + ["--device", "cuda", "--dtype", "bf16"])
    r32 = run(exe, args)
    if r16.returncode or r32.returncode:
        check("plan --device cuda --dtype bf16", False, (r16.stderr + r32.stderr)[-300:])
        return
    a, b = json.loads(r16.stdout.strip().splitlines()[-1]), json.loads(r32.stdout.strip().splitlines()[-1])
    ka, kb = a["peak_bytes"]["tags"]["host"]["kv_cache"], b["peak_bytes"]["tags"]["host"]["kv_cache"]
    check("plan --device cuda --dtype bf16: the GPU's math and a bf16 K/V cache (half the CPU plan's on the host)",
          a["dtype"] == "BF16" and a["plan"]["kv_dtype"] == "bf16" and b["plan"]["kv_dtype"] == "fp32"
          and 2 * ka == kb, "%s %s %d vs %d" % (a["dtype"], a["plan"].get("kv_dtype"), ka, kb))
    r = run(exe, ["plan", "--model", model, "--seq-len", "64", "--dtype", "bf16"])
    check("plan --dtype bf16 on the CPU is refused naming the GPU", r.returncode == 1 and "GPU" in r.stderr,
          r.stderr[-300:])


def test_prompt_completion(exe, d):
    """data.kind jsonl with prompt/completion records, end to end: each step's
    metrics count exactly the completion tokens (and their eos) as labels, as
    a replay of the stream in Python says."""
    rng = random.Random(3)
    recs = [("".join(rng.choice("abcdef ") for _ in range(rng.randint(5, 40))),
             "".join(rng.choice("xyz") for _ in range(rng.randint(1, 12)))) for _ in range(40)]
    path = os.path.join(d, "pc.jsonl")
    with open(path, "w") as f:
        for p, c in recs:
            f.write(json.dumps({"prompt": p, "completion": c}) + "\n")
    out = os.path.join(d, "pc")
    cfg = os.path.join(d, "pc.yaml")
    T, B, steps = 48, 2, 4
    with open(cfg, "w") as f:
        f.write(CONFIG.replace("vocab_size: 64", "vocab_size: 259").split("data:")[0] +
                "data: {kind: jsonl, path: %s}\nseq_len: %d\nbatch_size: %d\nsteps: %d\nout_dir: %s\n"
                % (path, T, B, steps, out))
    r = run(exe, ["train", cfg])
    check("train on prompt/completion JSONL runs", r.returncode == 0, r.stderr.strip()[-300:])
    # the stream: each record's prompt bytes (not predicted), completion bytes and eos (predicted)
    ids, loss, end = [], [], []
    for p, c in recs:
        ids += list(p.encode()) + list(c.encode()) + [257]
        loss += [0] * len(p.encode()) + [1] * (len(c.encode()) + 1)
        end += [0] * (len(p.encode()) + len(c.encode())) + [1]
    want, at = [], 0
    for _ in range(steps):
        n = 0
        for _ in range(B):
            for t in range(T):
                i, j = (at + t) % len(ids), (at + t + 1) % len(ids)
                n += (not end[i]) and loss[j]
            at += T
        want.append(n)
    with open(os.path.join(out, "metrics.jsonl")) as f:
        got = [json.loads(line)["labels"] for line in f]
    check("the loss counts only the completion tokens (labels per step as replayed: %s)" % want, got == want,
          "got %s" % got)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--longctx", required=True)
    ap.add_argument("--keep", action="store_true")
    args, _ = ap.parse_known_args()
    d = tempfile.mkdtemp(prefix="longctx-train-")
    try:
        toks = np.random.default_rng(0).integers(0, 64, size=20000).astype(np.int32)
        tokens = os.path.join(d, "tokens.npy")
        np.save(tokens, toks)
        ref = test_straight_vs_resumed(args.longctx, d, tokens)
        test_kill9(args.longctx, d, tokens, ref)
        test_errors(args.longctx, d, tokens)
        test_eval_generate(args.longctx, d, tokens)
        test_plans(args.longctx, d, tokens, ref)
        test_plan_vs_grad(args.longctx, d)
        test_plan_for_a_gpu(args.longctx, d)
        test_prompt_completion(args.longctx, d)
    finally:
        if not args.keep:
            shutil.rmtree(d, ignore_errors=True)
    failed = RESULTS.count(False)
    print("%d passed, %d failed" % (len(RESULTS) - failed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
