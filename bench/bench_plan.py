#!/usr/bin/python3
"""The memory techniques of issue 4, measured side by side in one run.

(a) For one small model (configs/bench-plan.json) and a fixed --device-mem, the longest T
    that `longctx plan` says trains, for the plain step, each technique alone and
    --plan auto; each found length is then run with `longctx grad` under that budget
    (the tracker refuses any allocation past it), up to --verify-max tokens.
(c) Step time of each technique alone relative to the plain step at --time-lengths,
    with the device bytes it saves: the price of each byte saved.
(b), longctx against PyTorch at 2K / 8K / 32K, is bench/compare_torch.py.

    /usr/bin/python3 bench/bench_plan.py [--device-mem 64MiB] [--verify-max 32768]
        [--time-lengths 4096,16384] [--repeat 2] [--longctx build/bin/longctx]

Goals printed at the end: --plan auto trains >= 32x the plain step's length in the same
budget; offload to host costs < 10% step time at T >= 16K; SeCO < 30%.
Exit status 0 when every run worked (goals may still FAIL), 1 when a run failed.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLAIN = "--recompute none --mlp-tiles 1 --loss-tiles 1"
TECHNIQUES = [  # (name, flags): each technique alone, on top of the plain step
    ("plain", PLAIN),
    ("recompute full", "--recompute full --mlp-tiles 1 --loss-tiles 1"),
    ("recompute selective", "--recompute selective --mlp-tiles 1 --loss-tiles 1"),
    ("offload host", PLAIN + " --offload host"),
    ("offload disk", PLAIN + " --offload disk"),
    ("mlp tiles auto", "--recompute none --mlp-tiles auto --loss-tiles 1"),
    ("loss tiles auto", "--recompute none --mlp-tiles 1 --loss-tiles auto"),
    ("seco", PLAIN + " --chunk-mode seco --chunk-size {chunk}"),
    ("plan auto", "--plan auto"),
]


def run(cmd, check=True):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    return r


def last_json(out):
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return None


def fmt(n):
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= div:
            return f"{n / div:.2f} {unit}"
    return f"{n} B"


def plan_fits(a, model, flags, T, rates):
    cmd = [a.longctx, "plan", "--model", model, "--seq-len", str(T), "--json", "--rates", rates,
           "--device-mem", a.device_mem] + flags.split()
    r = run(cmd, check=False)
    j = last_json(r.stdout) if r.returncode == 0 else None
    return j if j and j.get("fits") else None


def longest(a, model, flags, rates):
    lo, hi = 0, 1
    while plan_fits(a, model, flags, hi, rates) and hi < (1 << 24):
        lo, hi = hi, hi * 2
    while hi - lo > max(1, lo // 64):  # to within 1.6%
        mid = (lo + hi) // 2
        (lo, hi) = (mid, hi) if plan_fits(a, model, flags, mid, rates) else (lo, mid)
    return lo


def tokens(tmp, T):
    path = os.path.join(tmp, f"t{T}.npy")
    if not os.path.exists(path):
        np.save(path, np.random.default_rng(T).integers(0, 512, size=(1, T + 1), dtype=np.int32))
    return path


def grad(a, model, tmp, T, flags, budget=True, repeat=1):
    cmd = [a.longctx, "grad", "--model", model, "--tokens", tokens(tmp, T), "--repeat", str(repeat)]
    cmd += (["--device-mem", a.device_mem] if budget else []) + flags.split()
    r = run(cmd, check=False)
    j = last_json(r.stdout) if r.returncode == 0 else None
    return j, r.stderr.strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--longctx", default=os.path.join(REPO, "build", "bin", "longctx"))
    ap.add_argument("--config", default=os.path.join(REPO, "configs", "bench-plan.json"))
    ap.add_argument("--device-mem", default="64MiB")
    ap.add_argument("--verify-max", type=int, default=32768, help="run grad at found lengths up to this")
    ap.add_argument("--time-lengths", default="4096,16384")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--skip-a", action="store_true")
    ap.add_argument("--skip-c", action="store_true")
    a = ap.parse_args()
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "model")
        run([a.longctx, "init", "--config", a.config, "--out", model])
        probe = last_json(run([a.longctx, "plan", "--model", model, "--seq-len", "1024", "--json"]).stdout)
        rates = json.dumps(probe["rates"] | {"disk_gbps": max(probe["rates"].get("disk_gbps", 0), 0.5)})
        print(f"model {a.config}; rates measured by longctx plan: {rates}")
        ratio = None
        if not a.skip_a:
            print(f"\n(a) longest T that trains in --device-mem {a.device_mem} (predicted; then run under the budget)")
            print(f"{'technique':22} {'longest T':>10} {'x plain':>8}  {'run at T':>9}  {'measured device peak':>20}  plan")
            base = None
            for name, flags in TECHNIQUES:
                flags = flags.format(chunk=1024)
                T = longest(a, model, flags, rates)
                base = base or T
                j = plan_fits(a, model, flags, T, rates) if T else None
                plan = " ".join(f"{k}={v}" for k, v in j["plan"].items() if v not in (0, "none") or k == "recompute") if j else "-"
                checked, peak = "-", "-"
                if T:  # past --verify-max, the run is at --verify-max (same plan search, same budget)
                    Tr = min(T, a.verify_max)
                    g, err = grad(a, model, tmp, Tr, flags)
                    if g:
                        checked, peak = str(Tr), fmt(g["peak_bytes"]["device"])
                    else:
                        checked = "FAILED"
                        failed.append(f"{name} at T={Tr}: {err[-300:]}")
                print(f"{name:22} {T:>10} {T / base:>7.1f}x  {checked:>9}  {peak:>20}  {plan}")
                if name == "plan auto":
                    ratio = T / base
        goals = []
        if ratio is not None:
            goals.append(f"goal --plan auto >= 32x the plain step's length: {'PASS' if ratio >= 32 else 'FAIL'} ({ratio:.1f}x)")
        if not a.skip_c:
            for T in [int(x) for x in a.time_lengths.split(",")]:
                print(f"\n(c) step time of each technique alone at T={T} (no budget), relative to the plain step")
                print(f"{'technique':22} {'step s':>8} {'x plain':>8} {'device peak':>12} {'saved':>12} {'s per GiB saved':>16}")
                base_s = base_dev = None
                for name, flags in TECHNIQUES[:-1]:
                    g, err = grad(a, model, tmp, T, flags.format(chunk=max(T // 4, 256)), budget=False, repeat=a.repeat)
                    if not g:
                        failed.append(f"{name} at T={T}: {err[-300:]}")
                        print(f"{name:22} FAILED")
                        continue
                    s, dev = g["step_seconds"], g["peak_bytes"]["device"]
                    base_s, base_dev = base_s or s, base_dev or dev
                    saved = base_dev - dev
                    price = f"{(s - base_s) / (saved / (1 << 30)):.2f}" if saved > 0 else "-"
                    print(f"{name:22} {s:>8.3f} {s / base_s:>7.2f}x {fmt(dev):>12} {fmt(saved):>12} {price:>16}")
                    if T >= 16384 and name == "offload host":
                        goals.append(f"goal offload host < +10% at T={T}: {'PASS' if s / base_s < 1.10 else 'FAIL'} ({100 * (s / base_s - 1):+.1f}%)")
                    if T >= 16384 and name == "seco":
                        goals.append(f"goal seco < +30% at T={T}: {'PASS' if s / base_s < 1.30 else 'FAIL'} ({100 * (s / base_s - 1):+.1f}%)")
        print()
        for g in goals:
            print(g)
    for f in failed:
        print("FAILED:", f, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
