#!/usr/bin/python3
"""`offload_model: host` in `longctx train`: the weights, their gradients and the AdamW moments in host
memory, one unit (the embedding, a block, the head) at a time on the device, the update on the CPU.
Against the same run with everything on the device: the same losses, gradient norms and final weights
(within float rounding: gradients are summed per unit, then added), for the whole sequence, SeCO chunks,
and the GPU's staging path (--device cpu-staged); bit-exact resume; the peaks `plan` predicts, tag by tag;
refusals that say why.

    /usr/bin/python3 tests/train/test_offload_model.py --longctx build/bin/longctx [--keep]

Prints one line per check and `N passed, M failed`; exits 1 on any failure.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import test_train_cli as cli  # noqa: E402
from llama_ref import read_safetensors  # noqa: E402

RESULTS = []


def check(name, ok, detail=""):
    RESULTS.append(bool(ok))
    print(("PASS " if ok else "FAIL ") + name + (": " + detail if detail and not ok else ""), flush=True)


def metrics(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def weights_close(a, b, rtol=1e-5):
    wa, wb = read_safetensors(a)[0], read_safetensors(b)[0]
    if set(wa) != set(wb):
        return False, "tensors differ: %s" % sorted(set(wa) ^ set(wb))
    worst = max(float(np.max(np.abs(wa[k] - wb[k])) / max(float(np.max(np.abs(wb[k]))), 1e-30)) for k in wb)
    return worst <= rtol, "largest relative difference %.3g" % worst


def train(exe, d, name, tokens, steps, over):
    out = os.path.join(d, name)
    r = cli.run(exe, ["train", cli.write_config(d, out, steps, tokens)] + over)
    return out, r


def test_equal(exe, d, tokens):
    for name, over in (("whole", []), ("seco", ["chunk_mode=seco", "chunk_size=20", "batch_size=1"]),
                       ("staged", ["device=cpu-staged"]), ("untied", ["model.init.tie_word_embeddings=false"])):
        ref, r1 = train(exe, d, "ref-" + name, tokens, 5, over)
        off, r2 = train(exe, d, "off-" + name, tokens, 5, over + ["offload_model=host"])
        what = "offload_model host (%s)" % name
        if r1.returncode or r2.returncode:
            check(what + " runs", False, (r1.stderr + r2.stderr)[-400:])
            continue
        a, b = metrics(ref), metrics(off)
        ok = len(a) == len(b) == 5 and all(
            abs(x["loss"] - y["loss"]) <= 1e-5 * abs(x["loss"]) and
            abs(x["grad_norm"] - y["grad_norm"]) <= 1e-5 * abs(x["grad_norm"]) for x, y in zip(a, b))
        check(what + ": the losses and gradient norms of the run on the device", ok,
              "%r vs %r" % ([(x["loss"], x["grad_norm"]) for x in b], [(x["loss"], x["grad_norm"]) for x in a]))
        ok, detail = weights_close(os.path.join(off, "model.safetensors"), os.path.join(ref, "model.safetensors"))
        check(what + ": the final weights of the run on the device", ok, detail)
        if name == "whole":
            dev = b[-1]["peak_bytes"]["tags"]["device"]
            check(what + ": no AdamW state on the device", "optim" not in dev, str(dev))
            plan = cli.run(exe, ["plan", "--model", ref, "--seq-len", "48", "--batch", "2", "--for", "train",
                                 "--offload-model", "host", "--json", "--rates",
                                 '{"gemm_gflops": 10, "attn_gflops": 5}'])
            if plan.returncode:
                check(what + ": plan", False, plan.stderr[-300:])
                continue
            want = json.loads(plan.stdout.strip().splitlines()[-1])["peak_bytes"]["tags"]
            got = b[-1]["peak_bytes"]["tags"]
            for tier, tags in (("device", ("weights", "grads")), ("host", ("weights", "grads", "optim"))):
                for tag in tags:
                    check("%s: %s %s peak %s = plan's %s" % (what, tier, tag, got[tier].get(tag),
                                                             want[tier].get(tag)),
                          got[tier].get(tag) == want[tier].get(tag) and want[tier].get(tag, 0) > 0)
            one = a[-1]["peak_bytes"]["tags"]["device"]
            check(what + ": the device holds under half the weights it holds without (%d vs %d bytes)"
                  % (dev["weights"], one["weights"]), dev["weights"] < 0.5 * one["weights"])


def test_optimizer(exe, d, tokens):
    """offload_optimizer: host: only the AdamW moments on the host, streamed through the device for the update:
    the run on the device bit for bit, and the moments' bytes where plan says."""
    ref = os.path.join(d, "ref-whole")
    out, r = train(exe, d, "optim", tokens, 5, ["offload_optimizer=host"])
    if r.returncode or not os.path.exists(ref):
        check("offload_optimizer host runs", False, r.stderr[-300:])
        return
    a, b = metrics(ref), metrics(out)
    check("offload_optimizer host: the losses of the run on the device bit for bit",
          [m["loss"] for m in a] == [m["loss"] for m in b], "%r vs %r" % ([m["loss"] for m in b], [m["loss"] for m in a]))
    wa = read_safetensors(os.path.join(ref, "model.safetensors"))[0]
    wb = read_safetensors(os.path.join(out, "model.safetensors"))[0]
    check("offload_optimizer host: the final weights bit for bit",
          set(wa) == set(wb) and all(np.array_equal(wa[k], wb[k]) for k in wa))
    plan = cli.run(exe, ["plan", "--model", ref, "--seq-len", "48", "--batch", "2", "--for", "train",
                         "--offload-optimizer", "host", "--json", "--rates", '{"gemm_gflops": 10, "attn_gflops": 5}'])
    if plan.returncode:
        check("offload_optimizer host: plan", False, plan.stderr[-300:])
        return
    want = json.loads(plan.stdout.strip().splitlines()[-1])["peak_bytes"]["tags"]
    got = b[-1]["peak_bytes"]["tags"]
    for tier in ("host", "device"):
        check("offload_optimizer host: %s optim peak %s = plan's %s" % (tier, got[tier].get("optim"),
                                                                       want[tier].get("optim")),
              got[tier].get("optim") == want[tier].get("optim") and want[tier].get("optim", 0) > 0)
    _, r = train(exe, d, "err", tokens, 2, ["offload_optimizer=host", "offload_model=host"])
    lines = [l for l in r.stderr.strip().splitlines() if l]
    check("offload_optimizer host with offload_model is refused in one line",
          r.returncode == 1 and len(lines) == 1 and "already" in lines[0], r.stderr[-300:])


def test_optimizer_disk(exe, d, tokens):
    """offload_optimizer: disk: the AdamW moments in a file of the offload directory, streamed through host
    slices (and the device's): the run on the device bit for bit, alone and with offload_model host (the
    weights and gradients on the host, the moments on the disk); a resume through a checkpoint that reads
    them from the file's mapping; the moments' bytes on the disk, host and device where plan says."""
    ref = os.path.join(d, "ref-whole")
    a = metrics(ref) if os.path.exists(ref) else []
    for name, where, over in (("alone", "disk", []), ("with offload_model host", "disk", ["offload_model=host"]),
                              ("split", "split", []), ("split, with offload_model host", "split",
                                                       ["offload_model=host"])):
        odir = os.path.join(d, "optim-dir-%s-%d" % (where, len(over)))  # made on first use
        out, r = train(exe, d, "optim-%s-%d" % (where, len(over)), tokens, 5,
                       ["offload_optimizer=" + where, "offload_dir=" + odir] + over)
        what = "offload_optimizer %s (%s)" % (where, name)
        if r.returncode or not a:
            check(what + " runs", False, r.stderr[-300:])
            continue
        b = metrics(out)
        exact = not over  # (offload_model sums each unit's gradients first: equal within rounding)
        ok = len(b) == 5 and all(abs(x["loss"] - y["loss"]) <= (0 if exact else 1e-5 * abs(y["loss"]))
                                 for x, y in zip(b, a))
        check(what + ": the losses of the run on the device" + (" bit for bit" if exact else ""), ok,
              "%r vs %r" % ([m["loss"] for m in b], [m["loss"] for m in a]))
        ok, detail = weights_close(os.path.join(out, "model.safetensors"), os.path.join(ref, "model.safetensors"),
                                   0 if exact else 1e-5)
        check(what + ": the final weights of the run on the device", ok, detail)
        plan = cli.run(exe, ["plan", "--model", ref, "--seq-len", "48", "--batch", "2", "--for", "train",
                             "--offload-optimizer", where, "--json", "--rates",
                             '{"gemm_gflops": 10, "attn_gflops": 5}'] + (["--offload-model", "host"] if over else []))
        if plan.returncode:
            check(what + ": plan", False, plan.stderr[-300:])
            continue
        want = json.loads(plan.stdout.strip().splitlines()[-1])["peak_bytes"]["tags"]
        got = b[-1]["peak_bytes"]["tags"]
        for tier in ("disk", "host", "device"):
            check("%s: %s optim peak %s = plan's %s" % (what, tier, got[tier].get("optim"), want[tier].get("optim")),
                  got[tier].get("optim") == want[tier].get("optim") and
                  (tier == "device" and over or want[tier].get("optim", 0) > 0))
    # a checkpoint after step 3 (the moments read from the file), resumed: the straight run's steps 4-5
    out = os.path.join(d, "optim-disk-resume")
    over = ["offload_optimizer=disk"]
    _, r1 = train(exe, d, "optim-disk-resume", tokens, 5, over + ["stop_after=3"])
    _, r2 = train(exe, d, "optim-disk-resume", tokens, 5, over + ["resume=true"])
    b = metrics(out) if r1.returncode == 0 and r2.returncode == 0 else []
    check("offload_optimizer disk: resumed after step 3, the losses of the run on the device bit for bit",
          [m["loss"] for m in b][-5:] == [m["loss"] for m in a], (r1.stderr + r2.stderr)[-300:] +
          " %r vs %r" % ([m["loss"] for m in b], [m["loss"] for m in a]))


def test_auto(exe, d, tokens):
    """plan: auto in a device budget too small for the model state on the device moves it to the host, and
    the trainer does what the plan says (the model is built with it)."""
    out, r = train(exe, d, "auto", tokens, 5, ["plan=auto", "device_mem=450KiB"])
    ref = metrics(os.path.join(d, "ref-whole")) if os.path.exists(os.path.join(d, "ref-whole")) else []
    if r.returncode or not ref:
        check("plan auto in 450 KiB of device memory", False, r.stderr[-300:])
        return
    got = metrics(out)
    check("plan auto in 450 KiB of device memory picks offload_model host", "offload_model=host" in r.stdout,
          r.stdout[-300:])
    peak = max(m["peak_bytes"]["device"] for m in got)
    check("... and the device peak stays in the budget (%d bytes)" % peak, peak <= 450 * 1024)
    check("... with the losses of the run on the device",
          len(got) == len(ref) and all(abs(a["loss"] - b["loss"]) <= 1e-5 * abs(b["loss"]) for a, b in zip(got, ref)),
          "%r vs %r" % ([m["loss"] for m in got], [m["loss"] for m in ref]))


def test_grad(exe, d):
    """`grad --offload-model host`: every gradient of the step on the device."""
    model = os.path.join(d, "ref-whole")
    toks = os.path.join(d, "grad.npy")
    np.save(toks, np.random.default_rng(3).integers(0, 64, size=(2, 97)).astype(np.int32))
    for flags in ([], ["--chunk-mode", "seco", "--chunk-size", "32"], ["--device", "cpu-staged"]):
        a, b = os.path.join(d, "g-ref.safetensors"), os.path.join(d, "g-off.safetensors")
        r1 = cli.run(exe, ["grad", "--model", model, "--tokens", toks, "--out", a] + flags)
        r2 = cli.run(exe, ["grad", "--model", model, "--tokens", toks, "--out", b, "--offload-model", "host"] + flags)
        what = "grad --offload-model host %s" % " ".join(flags)
        if r1.returncode or r2.returncode:
            check(what, False, (r1.stderr + r2.stderr)[-300:])
            continue
        la = json.loads(r1.stdout.strip().splitlines()[-1])["loss"]
        lb = json.loads(r2.stdout.strip().splitlines()[-1])["loss"]
        ok, detail = weights_close(b, a)
        check(what + ": the loss and every gradient of the step on the device", ok and la == lb,
              detail + " loss %r vs %r" % (lb, la))


def test_resume(exe, d, tokens):
    full, r1 = train(exe, d, "off-full", tokens, 6, ["offload_model=host"])
    part, r2 = train(exe, d, "off-part", tokens, 6, ["offload_model=host", "stop_after=3"])
    r3 = cli.run(exe, ["train", cli.write_config(d, part, 6, tokens), "offload_model=host", "resume=true"])
    if r1.returncode or r2.returncode or r3.returncode:
        check("offload_model host: stop and resume", False, (r1.stderr + r2.stderr + r3.stderr)[-400:])
        return
    a, b = [m["loss"] for m in metrics(full)], [m["loss"] for m in metrics(part)]
    check("offload_model host: stopped after 3 steps and resumed, the losses of the straight run bit for bit",
          a == b, "%r vs %r" % (b, a))
    wa = read_safetensors(os.path.join(full, "model.safetensors"))[0]
    wb = read_safetensors(os.path.join(part, "model.safetensors"))[0]
    check("offload_model host: resumed, the final weights bit for bit",
          set(wa) == set(wb) and all(np.array_equal(wa[k], wb[k]) for k in wa))


def test_refusals(exe, d, tokens):
    cases = [("with LoRA", ["offload_model=host", "lora.rank=4"], "LoRA"),
             ("to disk", ["offload_model=disk"], "offload-model host"),
             ("a bad value", ["offload_model=gpu"], "none|host|disk")]
    for name, over, word in cases:
        _, r = train(exe, d, "err", tokens, 2, over)
        lines = [l for l in r.stderr.strip().splitlines() if l]
        check("offload_model refused " + name + " in one line naming why",
              r.returncode == 1 and len(lines) == 1 and word in lines[0], r.stderr[-300:])
    if shutil.which("mpirun"):
        cmd = ["mpirun", "--oversubscribe", "-x", "OMP_NUM_THREADS=1", "-np", "2"]
        if os.geteuid() == 0:
            cmd.insert(1, "--allow-run-as-root")
        out = os.path.join(d, "err2")
        r = subprocess.run(cmd + [exe, "train", cli.write_config(d, out, 2, tokens), "offload_model=host"],
                           capture_output=True, text=True, timeout=300)
        check("offload_model host across 2 ranks is refused naming zero: 3",
              r.returncode != 0 and "one rank" in r.stderr and "zero: 3" in r.stderr, r.stderr[-300:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--longctx", required=True)
    ap.add_argument("--keep", action="store_true")
    args, _ = ap.parse_known_args()
    d = tempfile.mkdtemp(prefix="longctx-offload-model-")
    try:
        tokens = os.path.join(d, "tokens.npy")
        np.save(tokens, np.random.default_rng(0).integers(0, 64, size=20000).astype(np.int32))
        test_equal(args.longctx, d, tokens)
        test_optimizer(args.longctx, d, tokens)
        test_optimizer_disk(args.longctx, d, tokens)
        test_auto(args.longctx, d, tokens)
        test_grad(args.longctx, d)
        test_resume(args.longctx, d, tokens)
        test_refusals(args.longctx, d, tokens)
    finally:
        if not args.keep:
            shutil.rmtree(d, ignore_errors=True)
    failed = RESULTS.count(False)
    print("%d passed, %d failed" % (len(RESULTS) - failed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
