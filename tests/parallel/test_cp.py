#!/usr/bin/python3
"""Context parallelism under mpirun -np 2 and -np 4 against one rank: loss and every
gradient of `longctx grad` (GQA, MQA, MHA; lengths that do not divide; plans and LoRA
inside; ZeRO 2-3; SeCO/SpaCO chunks), a few training steps, and failures that end the
whole job naming the rank.

    /usr/bin/python3 tests/parallel/test_cp.py --longctx build/bin/longctx [--keep]

Prints one line per check and `N passed, M failed`; exits 1 on any failure.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "train"))
from llama_ref import read_safetensors  # noqa: E402
import test_train_cli as train_cli  # noqa: E402

RESULTS = []


def check(name, ok, detail=""):
    RESULTS.append(bool(ok))
    print(("PASS " if ok else "FAIL ") + name + (": " + detail if detail and not ok else ""), flush=True)


def mpirun(n):
    # one OpenMP thread per rank and ranks that yield when idle: 4 ranks share 2 cores
    cmd = ["mpirun", "--oversubscribe", "-x", "OMP_NUM_THREADS=1", "--mca", "mpi_yield_when_idle", "1", "-np", str(n)]
    if os.geteuid() == 0:
        cmd.insert(1, "--allow-run-as-root")
    return cmd


def run(cmd, timeout=600):
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    r.seconds = time.time() - t0
    return r


def model(exe, d, name, nh, nkv, layers=2, tied=False, extra=None):
    cfg = {"vocab_size": 97, "hidden_size": 12 * nh, "intermediate_size": 80, "num_hidden_layers": layers,
           "num_attention_heads": nh, "num_key_value_heads": nkv, "tie_word_embeddings": tied,
           "initializer_range": 0.2, **(extra or {})}
    p = os.path.join(d, name + ".json")
    with open(p, "w") as f:
        json.dump(cfg, f)
    out = os.path.join(d, name)
    subprocess.run([exe, "init", "--config", p, "--out", out, "--seed", "3"], check=True, capture_output=True)
    return out


def ranks_grad(exe, n, args, what):
    """`longctx grad ARGS` on n ranks: its JSON, or None once `what` is checked as failed (the error's tail)."""
    r = run(mpirun(n) + [exe, "grad"] + args)
    if r.returncode:
        check(what, False, r.stderr[-300:])
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def grads_close(a, b, rtol=1e-5):
    ga, gb = read_safetensors(a)[0], read_safetensors(b)[0]
    if set(ga) != set(gb):
        return False, "different tensors"
    worst = max(float(np.abs(np.asarray(ga[k], np.float64) - np.asarray(gb[k], np.float64)).max()) for k in ga)
    big = max(float(np.abs(np.asarray(ga[k], np.float64)).max()) for k in ga)
    return worst <= rtol * big, "max diff %.3g of %.3g" % (worst, big)


def test_grads(exe, d):
    toks = os.path.join(d, "t.npy")
    np.save(toks, np.random.default_rng(0).integers(0, 97, size=(2, 38)).astype(np.int32))  # T = 37
    for name, nh, nkv in (("gqa", 4, 2), ("mqa", 4, 1), ("mha", 4, 4)):
        m = model(exe, d, name, nh, nkv)
        for flags in ([], ["--recompute", "none", "--offload", "host", "--mlp-tiles", "3"],
                      ["--lora-rank", "2", "--lora-targets", "q_proj,v_proj,down_proj"]):
            ref = os.path.join(d, "g1.safetensors")
            r1 = run([exe, "grad", "--model", m, "--tokens", toks, "--out", ref] + flags)
            if r1.returncode:
                check("one rank %s %s" % (name, flags), False, r1.stderr[-300:])
                continue
            j1 = json.loads(r1.stdout.strip().splitlines()[-1])
            l1 = j1["loss"]
            runs = [(k, n, []) for k in ("ulysses", "upipe", "ring", "zigzag") for n in (2, 4)]
            runs += [("hybrid", 4, ["--cp-ulysses", "2"]), ("hybrid", 2, ["--cp-ulysses", "1"]),
                     ("ulysses", 2, ["--dp", "2"]), ("zigzag", 4, ["--dp", "2"])]
            # ZeRO-2 (gradients reduce-scattered block by block; LoRA: the adapters' after the pass) and
            # ZeRO-3 (weights gathered block by block; refused with LoRA) under every CP kind
            runs += [("ring", 2, ["--zero", "2"]), ("zigzag", 4, ["--dp", "2", "--zero", "2"])]
            if "--lora-rank" not in flags:
                runs += [("ulysses", 2, ["--zero", "3"]), ("upipe", 4, ["--zero", "3"]), ("ring", 4, ["--zero", "3"]),
                         ("zigzag", 2, ["--zero", "3"]), ("hybrid", 4, ["--cp-ulysses", "2", "--zero", "3"]),
                         ("ulysses", 4, ["--dp", "2", "--zero", "3"])]
            for kind, n, extra in runs:
                out = os.path.join(d, "g%d.safetensors" % n)
                what = "%s%s -np %d %s (NH %d, NKV %d, T 37) %s" % (kind, " ".join([""] + extra), n, name, nh, nkv,
                                                                     " ".join(flags))
                j = ranks_grad(exe, n, ["--model", m, "--tokens", toks, "--out", out, "--cp-kind", kind] + extra + flags,
                               what)
                if j is None:
                    continue
                ok, detail = grads_close(ref, out)
                check(what + ": loss and every gradient equal one rank's",
                      ok and abs(j["loss"] - l1) <= 1e-5 * abs(l1) and len(j["peak_bytes_per_rank"]) == n,
                      detail + " loss %r vs %r" % (j["loss"], l1))


def test_comm(exe):
    """Every collective of MpiComm (and of NcclComm where this machine has GPUs) on known data."""
    for n in (2, 4):
        r = run(mpirun(n) + [exe, "comm-check"], timeout=120)
        check("comm-check -np %d: every MpiComm collective, and of its split halves" % n,
              r.returncode == 0 and "0 failed" in r.stdout, (r.stdout + r.stderr)[-400:])
    import re
    r = run(mpirun(2) + [exe, "comm-check", "--bandwidth", "--mib", "4"], timeout=120)
    m = re.search(r"all_reduce ([0-9.]+), all_to_all ([0-9.]+), exchange ([0-9.]+)", r.stdout)
    check("comm-check --bandwidth -np 2: the collectives' bus GB/s, for plan --ranks",
          r.returncode == 0 and m and all(float(x) > 0 for x in m.groups()), (r.stdout + r.stderr)[-300:])
    info = run([exe, "info"]).stdout
    gpus = [l for l in info.splitlines() if l.startswith("cuda devices:")]
    if "nccl: built" not in info or not gpus or "none" in gpus[0]:
        print("SKIP comm-check --nccl: " + (gpus[0] if gpus else "no CUDA") + " (NcclComm needs a GPU per rank)")
        return
    r = run(mpirun(2) + [exe, "comm-check", "--nccl"], timeout=300)
    check("comm-check --nccl -np 2: every NcclComm collective on device buffers",
          r.returncode == 0 and "0 failed" in r.stdout, (r.stdout + r.stderr)[-400:])


def test_chunks(exe, d):
    """SeCO and SpaCO across ranks (Ulysses on each chunk, the K/V cache head-sharded) equal one rank's step."""
    toks = os.path.join(d, "c37.npy")
    np.save(toks, np.random.default_rng(4).integers(0, 97, size=(1, 38)).astype(np.int32))  # T = 37: 5 chunks of 8
    for name, nh, nkv in (("gqa", 4, 2), ("mqa", 4, 1)):
        m = model(exe, d, "c" + name, nh, nkv)
        for flags, extra in ((["--chunk-mode", "seco", "--chunk-size", "8"], []),
                             (["--chunk-mode", "spaco", "--chunk-size", "8", "--chunk-budget", "2"], []),
                             (["--chunk-mode", "seco", "--chunk-size", "8", "--offload", "host", "--recompute",
                               "selective"], []),
                             (["--chunk-mode", "seco", "--chunk-size", "8", "--lora-rank", "2"], []),
                             (["--chunk-mode", "seco", "--chunk-size", "8"], ["--zero", "3"]),
                             # a rank whose slice of the last chunk is all padding still joins every gather
                             (["--chunk-mode", "spaco", "--chunk-size", "8", "--chunk-budget", "5"], ["--zero", "3"])):
            ref = os.path.join(d, "c1.safetensors")
            r1 = run([exe, "grad", "--model", m, "--tokens", toks, "--out", ref] + flags)
            l1 = json.loads(r1.stdout.strip().splitlines()[-1])["loss"] if r1.returncode == 0 else None
            # hybrid: Ulysses in groups of 2, ring (token slices of the group's heads) across the 2 groups
            hybrid = [(4, "hybrid")] if name == "gqa" else []
            for n, kind in [(2, "ulysses"), (4, "ulysses"), (2, "ring"), (4, "ring")] + hybrid:
                out = os.path.join(d, "c%d.safetensors" % n)
                r = run(mpirun(n) + [exe, "grad", "--model", m, "--tokens", toks, "--out", out, "--cp-kind",
                                     kind] + (["--cp-ulysses", "2"] if kind == "hybrid" else []) + flags + extra)
                what = "%s -np %d %s %s %s" % (kind, n, name, " ".join(flags), " ".join(extra))
                if r.returncode or r1.returncode:
                    check(what, False, (r1.stderr + r.stderr)[-300:])
                    continue
                j = json.loads(r.stdout.strip().splitlines()[-1])
                ok, detail = grads_close(ref, out)
                check(what + ": loss and every gradient equal one rank's",
                      ok and abs(j["loss"] - l1) <= 1e-5 * abs(l1), detail + " loss %r vs %r" % (j["loss"], l1))
    # More ranks than KV heads (MQA on 2 and 4 ranks, GQA with 2 KV heads on 4): the ranks that receive the
    # same KV head keep a part of every page of its cache each, gathered before attention reads it. Exact on
    # every tier (above and here); each rank's cache is 1/ranks-sharing of one head's, as `plan --ranks` says.
    # (mistral: a sliding window of 11, so that chunk pages more than a page behind are skipped, traffic too)
    model(exe, d, "cmistral", 4, 1, extra={"model_type": "mistral", "sliding_window": 11})
    for name, nh, nkv in (("mqa", 4, 1), ("gqa", 4, 2), ("mistral", 4, 1)):
        m = os.path.join(d, "c" + name)
        for off in ("host", "disk", "none", "host-bf16") if name != "mistral" else ("host",):
            flags = ["--chunk-mode", "seco", "--chunk-size", "8", "--offload", off.split("-")[0]]
            if off.endswith("bf16"):  # the cache in bf16: each part rounded as one rank rounds the page
                flags += ["--kv-dtype", "bf16"]
            tier = {"none": "device"}.get(off, off.split("-")[0])
            r1 = run([exe, "grad", "--model", m, "--tokens", toks, "--out", os.path.join(d, "s1.safetensors")] + flags)
            # ring: every rank keeps its token slice of every page, all heads, whatever the KV heads
            hybrid = [(4, "hybrid")] if name == "gqa" else []
            for n, kind in [(2, "ulysses"), (4, "ulysses"), (2, "ring"), (4, "ring")] + hybrid:
                if nkv % n == 0 and kind == "ulysses":
                    continue
                out = os.path.join(d, "s%d.safetensors" % n)
                hy = ["--cp-ulysses", "2"] if kind == "hybrid" else []
                r = run(mpirun(n) + [exe, "grad", "--model", m, "--tokens", toks, "--out", out, "--cp-kind",
                                     kind] + hy + flags)
                pl = run([exe, "plan", "--model", m, "--seq-len", "37", "--ranks", str(n), "--cp-kind", kind,
                          "--json"] + hy + flags)
                what = "%s -np %d %s, K/V pages shared, offload %s" % (kind, n, name, off)
                if r.returncode or r1.returncode or pl.returncode:
                    check(what, False, (r1.stderr + r.stderr + pl.stderr)[-300:])
                    continue
                ok, detail = grads_close(os.path.join(d, "s1.safetensors"), out)
                check(what + ": every gradient equals one rank's", ok, detail)
                sent = json.loads(r.stdout.strip().splitlines()[-1])["cp_attention_bytes_sent_per_step"]
                want = json.loads(pl.stdout.strip().splitlines()[-1])["kinds"][0]["attention_bytes"]
                check("%s: bytes sent per rank %d = plan's formula %d (page gathers included)" % (what, sent, want),
                      abs(sent - want) <= 1e-6 * want)
                if off == "disk":
                    continue  # (the disk's bytes are files, not a tracked tier peak)
                per = json.loads(r.stdout.strip().splitlines()[-1])["peak_bytes_per_rank"]
                one = json.loads(r1.stdout.strip().splitlines()[-1])["peak_bytes"]["tags"][tier]
                pred = json.loads(pl.stdout.strip().splitlines()[-1])["kinds"][0]["peak_bytes"]["tags"][tier]
                # ulysses: ranks per KV head (one query head per rank on 4, two on 2 for MQA), the KV head once
                # on each rank (its query heads all in that head's group); ring: all heads, a 1/n token slice
                # hybrid (groups of 2 with 2 KV heads): one KV head per rank, a token slice of the 2 groups'
                sharing, heads = {"ulysses": (n // nkv, 1), "ring": (n, nkv), "hybrid": (2, 1)}[kind]
                for tag in ("kv_cache", "kv_grad"):
                    got = sorted(set(p["tags"][tier][tag] for p in per))
                    # the stores: one rank's whole cache of nkv heads / nkv heads / sharing;
                    # on the device also the staging slots (tag kv_cache), checked against the plan only
                    want_store = one[tag] * heads // nkv // sharing
                    ok = got == [pred[tag]] and (off != "host" or got == [want_store])
                    check("%s: %s per rank %s = plan --ranks %d's %d (one rank's %d)"
                          % (what, tag, got, n, pred[tag], one[tag]), ok)
    m = model(exe, d, "cref", 4, 2)
    r = run(mpirun(2) + [exe, "grad", "--model", m, "--tokens", toks, "--cp-kind", "zigzag", "--chunk-mode", "seco",
                         "--chunk-size", "8"])
    check("chunks with zigzag CP are refused saying why (ring is balanced with chunks)",
          r.returncode != 0 and "--cp-kind ulysses, ring or hybrid" in r.stderr and "balanced" in r.stderr,
          r.stderr[-300:])
    r = run(mpirun(4) + [exe, "grad", "--model", os.path.join(d, "cmqa"), "--tokens", toks, "--cp-kind", "hybrid",
                         "--cp-ulysses", "2", "--chunk-mode", "seco", "--chunk-size", "8"])
    check("chunks with hybrid groups larger than the KV heads are refused saying so",
          r.returncode != 0 and "exceeds the 1 KV heads" in r.stderr, r.stderr[-300:])
    r = run(mpirun(4) + [exe, "grad", "--model", m, "--tokens", toks, "--chunk-mode", "seco", "--chunk-size", "6"])
    check("a chunk size that does not divide over the ranks is refused saying so",
          r.returncode != 0 and "does not divide over 4 ranks" in r.stderr, r.stderr[-300:])


def test_device_buffers(exe, d):
    """Ranks whose buffers are device memory that host code may not touch (--device cpu-staged: the GPU
    backend's paths on the CPU): every CP kind, with and without ZeRO-3, chunks with shared K/V pages and
    training, over MPI staged through pinned host buffers (--comm mpi, what ranks sharing one GPU take),
    equal one rank's plain step."""
    for n in (2, 4):
        r = run(mpirun(n) + [exe, "comm-check", "--staged"], timeout=120)
        check("comm-check --staged -np %d: every collective staged through host buffers, and of its split halves"
              % n, r.returncode == 0 and "0 failed" in r.stdout, (r.stdout + r.stderr)[-400:])
    toks = os.path.join(d, "dev.npy")
    np.save(toks, np.random.default_rng(0).integers(0, 97, size=(2, 38)).astype(np.int32))  # T = 37
    staged = ["--device", "cpu-staged"]
    for name, nh, nkv in (("gqa", 4, 2), ("mqa", 4, 1)):
        m = model(exe, d, "dev" + name, nh, nkv)
        ref = os.path.join(d, "dev1.safetensors")
        r1 = run([exe, "grad", "--model", m, "--tokens", toks, "--out", ref, "--device", "cpu"])
        if r1.returncode:
            check("one rank %s" % name, False, r1.stderr[-300:])
            continue
        l1 = json.loads(r1.stdout.strip().splitlines()[-1])["loss"]
        runs = [(k, n, z) for k in ("ulysses", "upipe", "ring", "zigzag") for n in (2, 4) for z in ([], ["--zero", "3"])]
        runs += [("hybrid", 4, ["--cp-ulysses", "2"]), ("hybrid", 4, ["--cp-ulysses", "2", "--zero", "3"]),
                 ("zigzag", 4, ["--dp", "2", "--zero", "2"])]
        if name == "gqa":
            runs += [("ring", 2, ["--recompute", "none", "--offload", "host", "--mlp-tiles", "3"])]
        for kind, n, extra in runs:
            out = os.path.join(d, "dev%d.safetensors" % n)
            what = "cpu-staged %s -np %d %s %s" % (kind, n, name, " ".join(extra))
            j = ranks_grad(exe, n, ["--model", m, "--tokens", toks, "--out", out, "--cp-kind", kind] + staged + extra,
                           what)
            if j is None:
                continue
            ok, detail = grads_close(ref, out)
            check(what + ": loss and every gradient equal one rank's (comm mpi-staged)",
                  ok and abs(j["loss"] - l1) <= 1e-5 * abs(l1) and j.get("comm") == "mpi-staged",
                  detail + " loss %r vs %r, comm %r" % (j["loss"], l1, j.get("comm")))
    # chunks across more ranks than KV heads: the shared pages' gathers and reduce-scatters on device buffers
    toks1 = os.path.join(d, "dev37.npy")
    np.save(toks1, np.random.default_rng(4).integers(0, 97, size=(1, 38)).astype(np.int32))
    m = os.path.join(d, "devmqa")
    for off, kind in (("none", "ulysses"), ("host", "ulysses"), ("none", "ring"), ("disk", "ring")):
        flags = ["--chunk-mode", "seco", "--chunk-size", "8", "--offload", off]
        ref = os.path.join(d, "devc1.safetensors")
        r1 = run([exe, "grad", "--model", m, "--tokens", toks1, "--out", ref, "--device", "cpu"] + flags)
        out = os.path.join(d, "devc4.safetensors")
        r = run(mpirun(4) + [exe, "grad", "--model", m, "--tokens", toks1, "--out", out, "--cp-kind", kind]
                + staged + flags)
        what = "cpu-staged %s -np 4 mqa, SeCO, K/V pages shared, offload %s" % (kind, off)
        if r.returncode or r1.returncode:
            check(what, False, (r1.stderr + r.stderr)[-300:])
            continue
        ok, detail = grads_close(ref, out)
        check(what + ": every gradient equals one rank's", ok, detail)
    r = run(mpirun(2) + [exe, "grad", "--model", m, "--tokens", toks, "--comm", "nccl"] + staged)
    check("--comm nccl without a GPU is refused saying so", r.returncode != 0 and "needs --device cuda" in r.stderr,
          r.stderr[-300:])
    # training: the same losses as the CPU ranks
    tokens = os.path.join(d, "devtrain.npy")
    np.save(tokens, np.random.default_rng(0).integers(0, 64, size=20000).astype(np.int32))
    got = {}
    for key, dev, extra in (("cpu", "cpu", ""), ("staged", "cpu-staged", ""),
                            ("staged-zero3", "cpu-staged", "zero: 3\n")):
        out = os.path.join(d, "devtrain-" + key)
        cfg = train_cli.write_config(d, out, 3, tokens, "cp_kind: zigzag\ndevice: %s\n%s" % (dev, extra))
        r = run(mpirun(2) + [exe, "train", cfg, "data.eos_id=5"])
        got[key] = [l for _, l in train_cli.losses(out)] if r.returncode == 0 else r.stderr[-300:]
    for key in ("staged", "staged-zero3"):
        ok = isinstance(got[key], list) and len(got[key]) == 3 and all(
            abs(a - b) <= 1e-6 * abs(b) for a, b in zip(got[key], got["cpu"]))
        check("train 3 steps, zigzag -np 2, %s: the losses on CPU ranks" % key, ok, "%r vs %r" % (got[key], got["cpu"]))


def test_zero_memory(exe, d):
    """ZeRO-2 keeps a part of the gradients plus one block's whole ones, ZeRO-3 the same of the weights;
    with tied embeddings the head gathers the embedding's unit."""
    toks = os.path.join(d, "t37.npy")
    np.save(toks, np.random.default_rng(0).integers(0, 97, size=(2, 38)).astype(np.int32))
    for name, layers, tied in (("tied", 2, True),):
        m = model(exe, d, name, 4, 2, layers=layers, tied=tied)
        ref = os.path.join(d, name + "1.safetensors")
        r1 = run([exe, "grad", "--model", m, "--tokens", toks, "--out", ref])
        # -np 3: parts of unequal length (every unit's size is a multiple of 16 elements)
        for zero, n, kind in ((2, 2, "zigzag"), (3, 2, "zigzag"), (2, 3, "ring"), (3, 3, "ring")):
            out = os.path.join(d, name + "z.safetensors")
            r = run(mpirun(n) + [exe, "grad", "--model", m, "--tokens", toks, "--out", out, "--cp-kind", kind,
                                 "--zero", str(zero)])
            ok, detail = grads_close(ref, out) if r.returncode == 0 and r1.returncode == 0 else (False, r.stderr[-300:])
            check("%s -np %d --zero %d, %s: every gradient equals one rank's" % (kind, n, zero, name), ok, detail)
    m = model(exe, d, "deep", 4, 2, layers=8)
    toks = os.path.join(d, "deep.npy")
    np.save(toks, np.random.default_rng(0).integers(0, 97, size=(1, 65)).astype(np.int32))
    r1 = run([exe, "grad", "--model", m, "--tokens", toks])
    one = json.loads(r1.stdout.strip().splitlines()[-1])["peak_bytes"]["tags"]["device"] if r1.returncode == 0 else {}
    for zero, tags in ((2, ("grads",)), (3, ("grads", "weights"))):
        r = run(mpirun(4) + [exe, "grad", "--model", m, "--tokens", toks, "--cp-kind", "ring", "--zero", str(zero)])
        if r.returncode or not one:
            check("ZeRO-%d memory per rank" % zero, False, (r1.stderr + r.stderr)[-300:])
            continue
        per = json.loads(r.stdout.strip().splitlines()[-1])["peak_bytes_per_rank"]
        for tag in tags:
            most = max(p["tags"]["device"][tag] for p in per)
            check("ZeRO-%d on 4 ranks (8 blocks): the %s per rank are under half of one rank's" % (zero, tag),
                  most < 0.5 * one[tag], "%d vs one rank's %d" % (most, one[tag]))
    # each CP kind's own buffers (tag comm: exchange buffers, head-sharded copies, document ids) as plan says
    toks = os.path.join(d, "t37.npy")
    m = os.path.join(d, "tied")
    for kind in ("ulysses", "upipe", "ring", "zigzag", "hybrid"):
        extra = ["--cp-kind", kind] + (["--cp-ulysses", "2"] if kind == "hybrid" else [])
        r = run(mpirun(4) + [exe, "grad", "--model", m, "--tokens", toks] + extra)
        pl = run([exe, "plan", "--model", m, "--seq-len", "37", "--batch", "2", "--ranks", "4", "--json"] + extra)
        if r.returncode or pl.returncode:
            check("%s -np 4: CP buffers per rank" % kind, False, (r.stderr + pl.stderr)[-300:])
            continue
        got = sorted(set(p["tags"]["device"]["comm"] for p in json.loads(r.stdout.strip().splitlines()[-1])[
            "peak_bytes_per_rank"]))
        want = json.loads(pl.stdout.strip().splitlines()[-1])["kinds"][0]["peak_bytes"]["tags"]["device"]["comm"]
        check("%s -np 4: CP buffers per rank %s = plan --ranks 4's %d bytes" % (kind, got, want), got == [want])


def test_training(exe, d):
    tokens = os.path.join(d, "train.npy")
    np.save(tokens, np.random.default_rng(0).integers(0, 64, size=20000).astype(np.int32))
    got = {}
    # packed documents (eos 5 splits them): document-causal attention across ranks too
    runs = (("1", 1, "", 0), ("u4", 4, "ulysses", 0), ("z4", 4, "zigzag", 0), ("r2", 2, "ring", 0),
            ("u4-zero1", 4, "ulysses", 1), ("z2-zero2", 2, "zigzag", 2), ("r4-zero2", 4, "ring", 2),
            ("h4", 4, "hybrid", 0), ("z4-dp2-zero1", 4, "zigzag", 1), ("u4-zero3", 4, "ulysses", 3),
            ("z2-zero3", 2, "zigzag", 3), ("h4-zero3", 4, "hybrid", 3))
    for key, n, kind, zero in runs:
        out = os.path.join(d, "train" + key)
        dp = 2 if "dp2" in key else 1
        cfg = train_cli.write_config(d, out, 4, tokens,
                                     "cp_kind: %s\nzero: %d\ndp: %d\n" % (kind or "ulysses", zero, dp))
        r = run(([exe] if n == 1 else mpirun(n) + [exe]) + ["train", cfg, "data.eos_id=5"])
        got[key] = [l for _, l in train_cli.losses(out)] if r.returncode == 0 else r.stderr[-300:]
    for key, _, _, _ in runs[1:]:  # "dp2": two data-parallel groups of two CP ranks
        ok = isinstance(got[key], list) and len(got[key]) == 4 and all(
            abs(a - b) <= 1e-6 * abs(b) for a, b in zip(got[key], got["1"]))
        check("train 4 steps (packed documents) with %s: the losses of one rank" % key, ok,
              "%r vs %r" % (got[key], got["1"]))
    per = []
    with open(os.path.join(d, "trainu4-zero3", "metrics.jsonl")) as f:
        per = [len(json.loads(line).get("peak_bytes_per_rank", [])) for line in f if line.strip()]
    check("train on 4 ranks logs every rank's peak memory each step", per == [4] * 4, str(per))
    # the AdamW moments off the device across ranks (ZeRO-1 shards them): each rank's bytes on every tier as
    # `plan --ranks` says
    cfgj = os.path.join(d, "train-model.json")
    with open(cfgj, "w") as f:
        json.dump({"vocab_size": 64, "hidden_size": 32, "intermediate_size": 56, "num_hidden_layers": 2,
                   "num_attention_heads": 4, "num_key_value_heads": 2, "rope_theta": 10000.0,
                   "tie_word_embeddings": True}, f)
    for where, zero in (("host", 1), ("disk", 0), ("split", 1)):
        out = os.path.join(d, "optim-%s-%d" % (where, zero))
        cfg = train_cli.write_config(d, out, 2, tokens, "cp_kind: ring\nzero: %d\n" % zero)
        r = run(mpirun(2) + [exe, "train", cfg, "offload_optimizer=" + where])
        pl = run([exe, "plan", "--model", cfgj, "--seq-len", "48", "--batch", "2", "--ranks", "2", "--cp-kind", "ring",
                  "--zero", str(zero), "--for", "train", "--offload-optimizer", where, "--json", "--rates",
                  '{"gemm_gflops": 1, "attn_gflops": 1}'])
        if r.returncode or pl.returncode:
            check("offload_optimizer %s across 2 ranks" % where, False, (r.stderr + pl.stderr)[-300:])
            continue
        with open(os.path.join(out, "metrics.jsonl")) as f:
            per = [json.loads(line) for line in f if line.strip()][-1]["peak_bytes_per_rank"]
        tiers = ("device", "host", "disk")
        got = sorted(set(tuple(p["tags"][t].get("optim", 0) for t in tiers) for p in per))
        want = json.loads(pl.stdout.strip().splitlines()[-1])["kinds"][0]["peak_bytes"]["tags"]
        want = tuple(want[t].get("optim", 0) for t in tiers)
        check("offload_optimizer %s, ring -np 2, ZeRO-%d: each rank's moments on the device, host and disk %s = "
              "plan --ranks' %s" % (where, zero, got, want), got == [want])
    # SeCO chunks across ranks (Ulysses on each chunk) train as one rank does
    seco = "chunk_mode: seco\nchunk_size: 16\n"
    r1 = run([exe, "train", train_cli.write_config(d, os.path.join(d, "seco1"), 4, tokens, seco), "data.eos_id=5",
              "batch_size=1"])
    r4 = run(mpirun(4) + [exe, "train", train_cli.write_config(d, os.path.join(d, "seco4"), 4, tokens,
                                                               seco + "zero: 3\n"), "data.eos_id=5", "batch_size=1"])
    a = [l for _, l in train_cli.losses(os.path.join(d, "seco4"))] if r4.returncode == 0 else []
    b = [l for _, l in train_cli.losses(os.path.join(d, "seco1"))] if r1.returncode == 0 else []
    check("train 4 steps with SeCO chunks, Ulysses and ZeRO-3 on 4 ranks: the losses of one rank",
          len(a) == 4 and len(b) == 4 and all(abs(x - y) <= 1e-6 * abs(y) for x, y in zip(a, b)),
          (r1.stderr + r4.stderr)[-300:] + " %r vs %r" % (a, b))
    # ZeRO checkpoints hold the whole weights and AdamW state: resuming on 2 ranks continues the 4-rank run
    out = os.path.join(d, "resume-zero")
    cfg = train_cli.write_config(d, out, 9, tokens, "cp_kind: ring\nzero: 3\n")
    r1 = run(mpirun(4) + [exe, "train", cfg, "data.eos_id=5", "stop_after=3"])
    r2 = run(mpirun(2) + [exe, "train", cfg, "data.eos_id=5", "resume=true", "zero=2", "stop_after=6"])
    r2b = run(mpirun(2) + [exe, "train", cfg, "data.eos_id=5", "resume=true", "zero=1"])
    r2.returncode |= r2b.returncode
    r2.stderr += r2b.stderr
    ref = os.path.join(d, "train9")
    r3 = run([exe, "train", train_cli.write_config(d, ref, 9, tokens), "data.eos_id=5"])
    a = [l for _, l in train_cli.losses(out)] if r1.returncode == 0 and r2.returncode == 0 else []
    b = [l for _, l in train_cli.losses(ref)] if r3.returncode == 0 else []
    same_model = False
    if a and b:
        wa, wb = read_safetensors(os.path.join(out, "model.safetensors"))[0], \
            read_safetensors(os.path.join(ref, "model.safetensors"))[0]
        # AdamW divides by sqrt(v): elements with near-zero gradients move by up to lr on rounding alone
        same_model = set(wa) == set(wb) and max(
            float(np.abs(np.asarray(wa[k], np.float64) - np.asarray(wb[k], np.float64)).max()) for k in wa) <= 1e-5 * max(
            float(np.abs(np.asarray(wb[k])).max()) for k in wb)
    check("ZeRO-3 on 4 ranks, resumed with ZeRO-2, then ZeRO-1 on 2 ranks: one rank's losses and final weights",
          len(a) == 9 and len(b) == 9 and same_model
          and all(abs(x - y) <= 1e-6 * abs(y) for x, y in zip(a, b)), (r1.stderr + r2.stderr)[-300:] + " %r vs %r" % (a, b))


def test_sharded_checkpoints(exe, d):
    """Across ranks each rank writes its own checkpoint shard (nothing gathered):
    a 4-rank ZeRO-3 run stopped and resumed on 4 ranks gives the straight run's
    losses and weights bit for bit; its shards export to the weights the run
    gathers at its end, bit for bit; resumed on 2 ranks and on 1 it continues
    as one rank does."""
    tokens = os.path.join(d, "shard.npy")
    np.save(tokens, np.random.default_rng(4).integers(0, 64, size=20000).astype(np.int32))
    extra = "cp_kind: ring\nzero: 3\nsave_every: 1\nkeep_last: 10\n"
    straight = os.path.join(d, "sh-straight")
    r = run(mpirun(4) + [exe, "train", train_cli.write_config(d, straight, 6, tokens, extra), "data.eos_id=5"])
    ok = r.returncode == 0
    shards = sorted(os.listdir(os.path.join(straight, "checkpoints", "step_00000006"))) if ok else []
    check("a 4-rank checkpoint is 4 shards, one per rank, plus state and config",
          shards == ["COMPLETE", "config.json"] + ["shard-%05d-of-00004.safetensors" % i for i in range(4)]
          + ["state.json"], str(shards) + r.stderr[-300:])
    ex = os.path.join(d, "sh-export")
    r = run([exe, "export", "--checkpoint", os.path.join(straight, "checkpoints", "step_00000006"), "--out", ex])
    same = r.returncode == 0 and open(os.path.join(ex, "model.safetensors"), "rb").read() == open(
        os.path.join(straight, "model.safetensors"), "rb").read()
    check("longctx export of the shards: the run's gathered final weights, bit for bit", same, r.stderr[-300:])
    resumed = os.path.join(d, "sh-resumed")
    cfg = train_cli.write_config(d, resumed, 6, tokens, extra)
    r1 = run(mpirun(4) + [exe, "train", cfg, "data.eos_id=5", "stop_after=3"])
    r2 = run(mpirun(4) + [exe, "train", cfg, "data.eos_id=5", "resume=true"])
    same = r1.returncode == 0 and r2.returncode == 0 and train_cli.losses(resumed) == train_cli.losses(straight) \
        and open(os.path.join(resumed, "model.safetensors"), "rb").read() == open(
            os.path.join(straight, "model.safetensors"), "rb").read()
    check("4 ranks stopped at step 3 and resumed from their shards on 4: the straight run, bit for bit", same,
          (r1.stderr + r2.stderr)[-300:])
    one = os.path.join(d, "sh-one")
    r = run([exe, "train", train_cli.write_config(d, one, 6, tokens, "save_every: 1\n"), "data.eos_id=5"])
    ref = [l for _, l in train_cli.losses(one)] if r.returncode == 0 else []
    for n, zero in ((2, 1), (1, 0)):
        out = os.path.join(d, "sh-on%d" % n)
        shutil.copytree(os.path.join(straight, "checkpoints", "step_00000003"),
                        os.path.join(out, "checkpoints", "step_00000003"))
        cfg = train_cli.write_config(d, out, 6, tokens, "cp_kind: ring\nzero: %d\n" % zero)
        r = run((mpirun(n) + [exe] if n > 1 else [exe]) + ["train", cfg, "data.eos_id=5", "resume=true"])
        got = [l for _, l in train_cli.losses(out)] if r.returncode == 0 else []
        check("the 4-rank shards of step 3 resumed on %d rank%s: one rank's losses for steps 4-6" %
              (n, "s" if n > 1 else ""), len(got) == 3 and len(ref) == 6 and all(
                  abs(x - y) <= 1e-6 * abs(y) for x, y in zip(got, ref[3:])),
              r.stderr[-300:] + " %r vs %r" % (got, ref[3:]))


def test_failures(exe, d):
    m = model(exe, d, "fail", 4, 2)
    good, bad = os.path.join(d, "good.npy"), os.path.join(d, "bad.npy")
    np.save(good, np.random.default_rng(1).integers(0, 97, size=(1, 65)).astype(np.int32))
    np.save(bad, np.full((1, 65), 500, dtype=np.int32))  # beyond the vocabulary, on rank 1 only
    cmd = mpirun(1)[:-2] + ["-np", "1", exe, "grad", "--model", m, "--tokens", good, ":",
                            "-np", "1", exe, "grad", "--model", m, "--tokens", bad]
    r = run(cmd, timeout=120)
    check("bad input on rank 1 only ends the job naming the rank, the activity and the file",
          r.returncode != 0 and r.seconds < 30 and "rank 1 of 2" in r.stderr and "loading" in r.stderr
          and "bad.npy" in r.stderr, "rc %d, %.1f s: %s" % (r.returncode, r.seconds, r.stderr[-400:]))
    r = run(mpirun(3) + [exe, "grad", "--model", m, "--tokens", good], timeout=120)
    check("a layout that cannot work is refused saying why", r.returncode != 0 and r.seconds < 30 and
          "do not divide over 3 ranks" in r.stderr, r.stderr[-300:])
    # a rank killed mid-run: the job ends within 30 s, never hangs
    big = os.path.join(d, "big.npy")
    np.save(big, np.random.default_rng(2).integers(0, 97, size=(1, 4097)).astype(np.int32))
    p = subprocess.Popen(mpirun(2) + [exe, "grad", "--model", m, "--tokens", big, "--repeat", "1000"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    kids = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
    killed = False
    if kids:
        os.kill(int(kids[-1]), signal.SIGKILL)
        killed = True
    t0 = time.time()
    try:
        p.communicate(timeout=60)
        ended = time.time() - t0
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        ended = 1e9
    check("a rank killed with SIGKILL brings the job down within 30 s", killed and ended < 30 and p.returncode != 0,
          "killed %s, ended after %.1f s, rc %s" % (killed, ended, p.returncode))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--longctx", required=True)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--only", help="run only the test_<ONLY> group (e.g. chunks)")
    args, _ = ap.parse_known_args()
    if not shutil.which("mpirun"):
        print("mpirun not found: install openmpi-bin (scripts/install-deps.sh does)")
        sys.exit(1)
    d = tempfile.mkdtemp(prefix="longctx-cp-")
    try:
        groups = [("comm", lambda: test_comm(args.longctx)), ("grads", lambda: test_grads(args.longctx, d)),
                  ("zero_memory", lambda: test_zero_memory(args.longctx, d)),
                  ("chunks", lambda: test_chunks(args.longctx, d)),
                  ("device_buffers", lambda: test_device_buffers(args.longctx, d)),
                  ("training", lambda: test_training(args.longctx, d)),
                  ("sharded_checkpoints", lambda: test_sharded_checkpoints(args.longctx, d)),
                  ("failures", lambda: test_failures(args.longctx, d))]
        for name, fn in groups:
            if args.only in (None, name):
                fn()
    finally:
        if not args.keep:
            shutil.rmtree(d, ignore_errors=True)
    failed = RESULTS.count(False)
    print("%d passed, %d failed" % (len(RESULTS) - failed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
