#!/usr/bin/python3
"""Context parallelism on this machine, measured side by side in one run:

  * per-rank peak activation memory (device tier minus weights, gradients and token ids)
    of `longctx grad` at a fixed T for P = 1, 2, 4 ranks and every CP kind, next to the
    1/P line from the one-rank figure;
  * the attention bytes each rank sends per step, measured by the runners, next to the
    formula of `longctx plan --ranks P` (bytes of K/V hops for ring/zigzag, of the
    all-to-alls for Ulysses).

    /usr/bin/python3 bench/bench_cp.py [--seq-len 4096] [--ranks 2,4] [--longctx build/bin/longctx]

Ranks share this machine's cores (one OpenMP thread each), so step times are not the point here.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def mpirun(n):
    cmd = ["mpirun", "--oversubscribe", "-x", "OMP_NUM_THREADS=1", "--mca", "mpi_yield_when_idle", "1", "-np", str(n)]
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--longctx", default=os.path.join(REPO, "build", "bin", "longctx"))
    ap.add_argument("--config", default=os.path.join(REPO, "configs", "bench-plan.json"))
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--ranks", default="2,4")
    a = ap.parse_args()
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        model, toks = os.path.join(tmp, "m"), os.path.join(tmp, "t.npy")
        subprocess.run([a.longctx, "init", "--config", a.config, "--out", model], check=True, capture_output=True)
        np.save(toks, np.random.default_rng(0).integers(0, 512, size=(1, a.seq_len + 1)).astype(np.int32))
        one = last_json(subprocess.run([a.longctx, "grad", "--model", model, "--tokens", toks], check=True,
                                       capture_output=True, text=True).stdout)
        base = act_bytes(one["peak_bytes"])
        print(f"model {a.config}, T = {a.seq_len}, plan {' '.join(f'{k}={v}' for k, v in one['plan'].items())}")
        print(f"one rank: activation peak {fmt(base)}\n")
        print(f"{'kind':8} {'P':>2} {'act peak/rank':>14} {'1/P of one rank':>16} {'ratio':>6}   "
              f"{'sent/rank/step':>15} {'formula':>15} {'match':>6}")
        for kind in ("ulysses", "upipe", "ring", "zigzag", "hybrid"):
            for P in [int(x) for x in a.ranks.split(",")]:
                if kind == "hybrid" and P < 4:
                    continue  # groups of 2 need at least two of them
                extra = ["--cp-ulysses", "2"] if kind == "hybrid" else []
                r = subprocess.run(mpirun(P) + [a.longctx, "grad", "--model", model, "--tokens", toks, "--cp-kind", kind]
                                   + extra, capture_output=True, text=True)
                if r.returncode:
                    print(f"{kind:8} {P:>2} FAILED: {r.stderr.strip()[-300:]}")
                    failed = True
                    continue
                j = last_json(r.stdout)
                peak = max(act_bytes(p) for p in j["peak_bytes_per_rank"])
                sent = j["cp_attention_bytes_sent_per_step"]
                pj = last_json(subprocess.run(
                    [a.longctx, "plan", "--model", model, "--seq-len", str(a.seq_len), "--ranks", str(P), "--cp-kind",
                     kind, "--json", "--rates", '{"gemm_gflops": 1, "attn_gflops": 1}'] + extra,
                    check=True, capture_output=True, text=True).stdout)
                want = pj["kinds"][0]["attention_bytes"]
                print(f"{kind:8} {P:>2} {fmt(peak):>14} {fmt(base / P):>16} {peak / (base / P):>6.2f}   "
                      f"{fmt(sent):>15} {fmt(want):>15} {'yes' if abs(sent - want) <= 1e-6 * want else 'NO':>6}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
