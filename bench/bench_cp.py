#!/usr/bin/python3
"""Context parallelism on this machine, measured side by side in one run:

  * per-rank peak activation memory (device tier minus weights, gradients and token ids)
    of `longctx grad` at a fixed T for P = 1, 2, 4 ranks and every CP kind, next to the
    1/P line from the one-rank figure;
  * the attention bytes each rank sends per step, measured by the runners, next to the
    formula of `longctx plan --ranks P` (bytes of K/V hops for ring/zigzag, of the
    all-to-alls for Ulysses);
  * per-rank weights and gradients under ZeRO 0-3, measured, next to one rank's and to
    `longctx plan --ranks P --zero Z`'s prediction;
  * SeCO chunks across ranks (Ulysses on each chunk, the K/V cache head-sharded): per-rank
    device peak and bytes sent, next to one rank's SeCO peak and to the prediction.

    /usr/bin/python3 bench/bench_cp.py [--seq-len 4096] [--ranks 2,4] [--longctx build/bin/longctx]
                                       [--device cpu|cpu-staged|cuda] [--comm auto|mpi|nccl] [--mpirun PATH]

Ranks share this machine's cores (one OpenMP thread each), so step times are not the point here. With
--device cuda (scripts/gpu_check.sh part `cp-bench`) the ranks share the GPU through --comm mpi and run in
fp32 (--dtype fp32), the precision `plan --ranks` predicts them in; cpu-staged runs the same device-buffer
paths on the CPU.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


MPIRUN = "mpirun"
DEVICE = []  # --device (and --dtype, --comm) for every grad


def mpirun(n):
    cmd = [MPIRUN, "--oversubscribe", "-x", "OMP_NUM_THREADS=1", "--mca", "mpi_yield_when_idle", "1", "-np", str(n)]
    if os.geteuid() == 0:
        cmd.insert(1, "--allow-run-as-root")
    return cmd


def last_json(out):
    return json.loads([l for l in out.strip().splitlines() if l.startswith("{")][-1])


def act_bytes(peak):
    dev = peak["tags"]["device"]
    return sum(v for k, v in dev.items() if k not in ("weights", "grads", "data"))


def fmt(n):
    return f"{n / (1 << 20):.2f} MiB"


def grad_ranks(a, P, model, toks, args):
    """`longctx grad` on P ranks: its JSON, or None (printed) when it failed."""
    r = subprocess.run(mpirun(P) + [a.longctx, "grad", "--model", model, "--tokens", toks] + DEVICE + args,
                       capture_output=True, text=True)
    if r.returncode:
        print(f"P={P} {' '.join(args)} FAILED: {r.stderr.strip()[-300:]}")
        return None
    return last_json(r.stdout)


def predicted(a, P, model, args):
    """`longctx plan --ranks P`'s prediction for its first CP kind (rates do not matter here)."""
    return last_json(subprocess.run(
        [a.longctx, "plan", "--model", model, "--seq-len", str(a.seq_len), "--ranks", str(P), "--json", "--rates",
         '{"gemm_gflops": 1, "attn_gflops": 1}'] + args, check=True, capture_output=True, text=True).stdout)["kinds"][0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--longctx", default=os.path.join(REPO, "build", "bin", "longctx"))
    ap.add_argument("--config", default=os.path.join(REPO, "configs", "bench-plan.json"))
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--ranks", default="2,4")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--comm", default="auto")
    ap.add_argument("--mpirun", default=os.environ.get("LCX_MPIRUN", "mpirun"))
    a = ap.parse_args()
    global MPIRUN
    MPIRUN = a.mpirun
    DEVICE.extend(["--device", a.device, "--comm", a.comm] + (["--dtype", "fp32"] if a.device == "cuda" else []))
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        model, toks = os.path.join(tmp, "m"), os.path.join(tmp, "t.npy")
        subprocess.run([a.longctx, "init", "--config", a.config, "--out", model], check=True, capture_output=True)
        np.save(toks, np.random.default_rng(0).integers(0, 512, size=(1, a.seq_len + 1)).astype(np.int32))
        one = last_json(subprocess.run([a.longctx, "grad", "--model", model, "--tokens", toks] + DEVICE[:2] +
                                       DEVICE[4:], check=True,
                                       capture_output=True, text=True).stdout)
        base = act_bytes(one["peak_bytes"])
        print(f"device {a.device}, comm {a.comm}")
        print(f"model {a.config}, T = {a.seq_len}, plan {' '.join(f'{k}={v}' for k, v in one['plan'].items())}")
        print(f"one rank: activation peak {fmt(base)}\n")
        print(f"{'kind':8} {'P':>2} {'act peak/rank':>14} {'1/P of one rank':>16} {'ratio':>6}   "
              f"{'sent/rank/step':>15} {'formula':>15} {'match':>6}")
        for kind in ("ulysses", "upipe", "ring", "zigzag", "hybrid"):
            for P in [int(x) for x in a.ranks.split(",")]:
                if kind == "hybrid" and P < 4:
                    continue  # groups of 2 need at least two of them
                extra = ["--cp-kind", kind] + (["--cp-ulysses", "2"] if kind == "hybrid" else [])
                j = grad_ranks(a, P, model, toks, extra)
                if j is None:
                    failed = True
                    continue
                peak = max(act_bytes(p) for p in j["peak_bytes_per_rank"])
                sent = j["cp_attention_bytes_sent_per_step"]
                want = predicted(a, P, model, extra)["attention_bytes"]
                print(f"{kind:8} {P:>2} {fmt(peak):>14} {fmt(base / P):>16} {peak / (base / P):>6.2f}   "
                      f"{fmt(sent):>15} {fmt(want):>15} {'yes' if abs(sent - want) <= 1e-6 * want else 'NO':>6}")
        failed |= zero_table(a, model, toks, one)
        failed |= chunk_table(a, model, toks)
    return 1 if failed else 0


def chunk_table(a, model, toks):
    chunk = ["--chunk-mode", "seco", "--chunk-size", str(a.seq_len // 4)]
    one = last_json(subprocess.run([a.longctx, "grad", "--model", model, "--tokens", toks] + DEVICE[:2] +
                                   DEVICE[4:] + chunk, check=True, capture_output=True, text=True).stdout)
    print(f"\nSeCO ({' '.join(chunk[1:])}) across ranks (ulysses: the cache head-sharded; ring: in token "
          f"slices, pages gathered): device peak per rank (one rank's SeCO: {fmt(one['peak_bytes']['device'])})")
    print(f"{'kind':8} {'P':>2} {'device/rank':>12} {'predicted':>11} {'sent/rank/step':>15} {'formula':>15} "
          f"{'match':>6}")
    failed = False
    for kind, P in [(k, int(x)) for k in ("ulysses", "ring") for x in a.ranks.split(",")]:
        args = ["--cp-kind", kind] + chunk
        j = grad_ranks(a, P, model, toks, args)
        if j is None:
            failed = True
            continue
        dev = max(p["device"] for p in j["peak_bytes_per_rank"])
        sent = j["cp_attention_bytes_sent_per_step"]
        k = predicted(a, P, model, args)
        print(f"{kind:8} {P:>2} {fmt(dev):>12} {fmt(k['peak_bytes']['device']):>11} {fmt(sent):>15} "
              f"{fmt(k['attention_bytes']):>15} {'yes' if abs(sent - k['attention_bytes']) <= 1e-6 * sent else 'NO':>6}")
    return failed


def zero_table(a, model, toks, one):
    """Model state per rank under ZeRO: a part of each unit plus one whole unit at a time."""
    dev1 = one["peak_bytes"]["tags"]["device"]
    print(f"\nZeRO, ring CP: device weights and gradients per rank (one rank: {fmt(dev1['weights'])} + "
          f"{fmt(dev1['grads'])})")
    print(f"{'zero':>4} {'P':>2} {'weights/rank':>13} {'predicted':>11} {'grads/rank':>13} {'predicted':>11} "
          f"{'state vs one rank':>18}")
    failed = False
    for P in [int(x) for x in a.ranks.split(",")]:
        for z in (0, 1, 2, 3):
            args = ["--cp-kind", "ring", "--zero", str(z)]
            j = grad_ranks(a, P, model, toks, args)
            if j is None:
                failed = True
                continue
            per = j["peak_bytes_per_rank"]
            w = max(p["tags"]["device"]["weights"] for p in per)
            g = max(p["tags"]["device"]["grads"] for p in per)
            pt = predicted(a, P, model, args)["peak_bytes"]["tags"]["device"]
            print(f"{z:>4} {P:>2} {fmt(w):>13} {fmt(pt['weights']):>11} {fmt(g):>13} {fmt(pt['grads']):>11} "
                  f"{(w + g) / (dev1['weights'] + dev1['grads']):>18.2f}")
    return failed


if __name__ == "__main__":
    sys.exit(main())
