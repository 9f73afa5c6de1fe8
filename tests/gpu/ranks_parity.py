#!/usr/bin/env python3
"""Ranks sharing the one GPU: `mpirun -np 2|4 longctx grad --device cuda --dtype fp32 --comm mpi` (device
buffers staged through pinned host memory) under every CP kind, with and without ZeRO-3, against the one-rank
GPU step; `comm-check --staged` on GPU memory; `mpirun -np 1 longctx comm-check --nccl`; and two NCCL ranks
posing as two hosts (NCCL_HOSTID: not supported by NCCL, so reported, not required). Run on a GPU machine
(scripts/gpu_check.sh part `ranks`), or with --device cpu-staged anywhere to check the script's logic:

    python3 tests/gpu/ranks_parity.py --longctx build-gpu/bin/longctx [--mpirun mpirun] [--json OUT.json]

Prints one line per check and `N passed, M failed` last; exits 1 on any failure of a required check.
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

RTOL = 1e-5  # max |g - g1| / max |g1| over every tensor, fp32 mode (the bound)
CONFIG = dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=256, hidden_size=128,
              intermediate_size=256, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2,
              max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
              initializer_range=0.05, torch_dtype="float32")
SECO = ["--chunk-mode", "seco", "--chunk-size", "64"]
RUNS = [(n, k, z, []) for n in (2, 4) for k in ("ulysses", "upipe", "ring", "zigzag") for z in (0, 3)]
RUNS += [(4, "hybrid", 0, []), (4, "hybrid", 3, [])]
# chunks across ranks (one sequence): Ulysses (the cache head-sharded) and ring (in token slices), pages on
# the GPU and in host memory
RUNS += [(4, k, 0, SECO + ["--offload", off]) for k in ("ulysses", "ring") for off in ("none", "host")]
RESULTS = []


def check(name, ok, detail=""):
    RESULTS.append(bool(ok))
    print(("PASS " if ok else "FAIL ") + name + ("" if ok or not detail else ": " + detail), flush=True)


def run(cmd, timeout=180, env=None):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:  # a hang is a failure of that check, not of the script
        out = lambda b: b.decode(errors="replace") if isinstance(b, bytes) else (b or "")  # noqa: E731
        return subprocess.CompletedProcess(cmd, 124, out(e.stdout), out(e.stderr) + "\n(timed out)")


def read_safetensors(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        head = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in head.items():
        if k == "__metadata__":
            continue
        assert v["dtype"] == "F32", v["dtype"]
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(data[a:b], np.float32).reshape(v["shape"])
    return out


def max_rel(a, b):
    ga, gb = read_safetensors(a), read_safetensors(b)
    if set(ga) != set(gb):
        return float("inf")
    worst = max(float(np.abs(ga[k].astype(np.float64) - gb[k]).max()) for k in ga)
    big = max(float(np.abs(gb[k]).max()) for k in gb)
    return worst / big


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--longctx", required=True)
    ap.add_argument("--mpirun", default=os.environ.get("LCX_MPIRUN", "mpirun"))
    ap.add_argument("--device", default="cuda", help="cuda, or cpu-staged to check the logic on a CPU")
    ap.add_argument("--json")
    ap.add_argument("--commit", default=os.environ.get("LCX_COMMIT", "unknown"))
    args = ap.parse_args()
    exe, gpu = args.longctx, args.device == "cuda"
    mpi = [args.mpirun, "--oversubscribe", "-x", "OMP_NUM_THREADS=2"]
    if os.geteuid() == 0:
        mpi.insert(1, "--allow-run-as-root")
    dev = ["--device", args.device] + (["--dtype", "fp32"] if gpu else [])
    report = {"gpu": "", "date": datetime.date.today().isoformat(), "commit": args.commit, "runs": [],
              "nccl_one_rank": "skipped", "nccl_hostid_two_ranks": "skipped"}
    info = run([exe, "info"]).stdout
    report["gpu"] = next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("cuda devices:")),
                         "none")
    d = tempfile.mkdtemp(prefix="lcx-ranks-")
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(CONFIG, f)
    r = run([exe, "init", "--config", os.path.join(d, "config.json"), "--out", os.path.join(d, "m"), "--seed", "5"])
    if r.returncode:
        check("init the model", False, r.stderr[-500:])
        sys.exit(1)
    toks = os.path.join(d, "t.npy")
    np.save(toks, np.random.default_rng(1).integers(0, 256, size=(2, 258)).astype(np.int32))  # T = 257
    toks1 = os.path.join(d, "t1.npy")  # chunk modes take one sequence: 257 tokens, 5 chunks of 64
    np.save(toks1, np.random.default_rng(2).integers(0, 256, size=(1, 258)).astype(np.int32))
    m, ref, ref1 = os.path.join(d, "m"), os.path.join(d, "g1.safetensors"), os.path.join(d, "g1c.safetensors")
    for t, g in ((toks, ref), (toks1, ref1)):
        r = run([exe, "grad", "--model", m, "--tokens", t, "--out", g] + dev)
        if r.returncode:
            check("one-rank step on %s" % args.device, False, r.stderr[-500:])
            sys.exit(1)
    for n, kind, zero, flags in RUNS:
        out = os.path.join(d, "g%d.safetensors" % n)
        extra = (["--zero", "3"] if zero else []) + flags
        if kind == "hybrid":
            extra += ["--cp-ulysses", "2"]
        r = run(mpi + ["-np", str(n), exe, "grad", "--model", m, "--tokens", toks1 if flags else toks, "--out", out,
                       "--cp-kind", kind, "--comm", "mpi"] + dev + extra)
        what = "%s -np %d zero %d %s, ranks sharing the %s through staged MPI" % (kind, n, zero, " ".join(flags),
                                                                                 args.device)
        if r.returncode:
            check(what, False, r.stderr[-500:])
            report["runs"].append({"ranks": n, "cp_kind": kind, "zero": zero, "flags": " ".join(flags),
                                   "max_rel": None})
            continue
        rel = max_rel(out, ref1 if flags else ref)
        report["runs"].append({"ranks": n, "cp_kind": kind, "zero": zero, "flags": " ".join(flags), "max_rel": rel})
        check("%s: every gradient equals one rank's (max rel %.2e, bound %.0e)" % (what, rel, RTOL), rel < RTOL)
    for n in (2, 4):
        r = run(mpi + ["-np", str(n), exe, "comm-check", "--staged", "--bandwidth", "--mib", "64"])
        check("comm-check --staged -np %d (GPU memory when there is one)" % n,
              r.returncode == 0 and "0 failed" in r.stdout, (r.stdout + r.stderr)[-500:])
        bw = [l for l in r.stdout.splitlines() if l.startswith("bandwidth")]
        if bw:
            report["staged_bandwidth_np%d" % n] = bw[-1]
            print("INFO " + bw[-1], flush=True)
    if gpu:
        r = run(mpi + ["-np", "1", exe, "comm-check", "--nccl"])
        ok = r.returncode == 0 and "0 failed" in r.stdout
        report["nccl_one_rank"] = "pass" if ok else "fail"
        check("mpirun -np 1 comm-check --nccl", ok, (r.stdout + r.stderr)[-500:])
        # each rank poses as its own host, so NCCL lets two ranks share the GPU (unsupported: reported only)
        wrap = ["sh", "-c", 'NCCL_HOSTID=lcxhost$OMPI_COMM_WORLD_RANK exec "$0" comm-check --nccl --bandwidth', exe]
        r = run(mpi + ["-np", "2"] + wrap, timeout=120)
        ok = r.returncode == 0 and "0 failed" in r.stdout
        report["nccl_hostid_two_ranks"] = "pass" if ok else "fail"
        print(("INFO " if ok else "INFO (not required) ") + "2 NCCL ranks with NCCL_HOSTID per rank: " +
              ("pass" if ok else (r.stdout + r.stderr)[-300:]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    failed = RESULTS.count(False)
    print("%d passed, %d failed" % (len(RESULTS) - failed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
