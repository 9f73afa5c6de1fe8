#!/usr/bin/env python3
"""The longest sequence on one GPU (issue 12's bench): for a Llama-3.2-1B shape (full fine-tuning), a
Llama-3.1-8B shape with LoRA and the 8B shape full-parameter, all with `--plan auto`:

  * plan_T: the longest T `longctx plan --auto` fits in the GPU's free memory, --host-mem and the offload
    directory's free space (rates measured on the GPU once, then given back);
  * longest_T: `grad --probe` at plan_T (the full-length state on every tier, the first and last chunks run,
    the step time extrapolated and labelled so), or the full step when plan_T is short enough;
  * full_T: the longest T whose predicted step takes at most --full-seconds (default 240), run for real:
    its measured step time beside plan's prediction, tokens/s;
  * hf_longest_T: Hugging Face LlamaForCausalLM (bf16, SDPA, gradient checkpointing; PEFT-free LoRA is not
    compared: the 8B LoRA row runs HF full backward) doubling T until it runs out of memory, in the same run;
  * each measured device peak against plan's prediction.

    python3 bench/gpu_long.py --longctx build-gpu/bin/longctx [--models 1b,8b-lora,8b-full] [--host-mem 100GiB]
                              [--offload-dir DIR] [--json docs/gpu/long.json] [--no-hf]
    python3 bench/gpu_long.py --longctx build/bin/longctx --device cpu --models tiny --max-T 65536 --no-hf

(The second line checks the script's logic on a CPU.) Writes docs/gpu/long.json's shape with --json.
"""
import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_cp import last_json  # noqa: E402
from gpu_step import LLAMA_1B  # noqa: E402

LLAMA_8B = dict(LLAMA_1B, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, tie_word_embeddings=False,
                rope_scaling=dict(LLAMA_1B["rope_scaling"], factor=8.0))  # Llama-3.1-8B's shape
TINY = dict(LLAMA_1B, vocab_size=512, hidden_size=128, intermediate_size=352, num_hidden_layers=2,
            num_attention_heads=8, num_key_value_heads=2)
MODELS = {  # name: (config, extra grad/plan flags)
    "1b": (LLAMA_1B, []),
    "8b-lora": (LLAMA_8B, ["--lora-rank", "16"]),
    "8b-full": (LLAMA_8B, []),
    "tiny": (TINY, []),
}
UNIT = 4096  # lengths are searched in multiples of this


class Bench:
    def __init__(self, a, tmp):
        self.a, self.tmp = a, tmp
        self.dev = ["--device", a.device] + (["--dtype", "bf16"] if a.device == "cuda" else [])
        self.budget = (["--host-mem", a.host_mem] if a.host_mem else []) + \
                      (["--device-mem", a.device_mem] if a.device_mem else [])
        self.dir = ["--offload-dir", a.offload_dir] if a.offload_dir else []
        self.rates = None  # measured by the first plan, then given back

    def plan(self, model, T, flags, chosen=None):
        """plan --auto's choice at T (None when nothing fits), or with `chosen` (a plan grad ran) that plan's
        prediction."""
        how = ["--auto"] if chosen is None else flags_of(chosen)
        # (the offload directory only where the plan puts something on the disk: plan refuses it otherwise)
        disk = chosen is None or chosen.get("offload") == "disk" or chosen.get("offload_optimizer") in ("disk", "split")
        cmd = [self.a.longctx, "plan", "--model", model, "--seq-len", str(T), "--for", "grad", "--json"] + how + \
              self.dev + self.budget + (self.dir if disk else []) + flags + \
              (["--rates", json.dumps(self.rates)] if self.rates else [])
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=self.a.timeout)
        except subprocess.TimeoutExpired:
            return None
        if r.returncode:
            return None
        j = last_json(r.stdout)
        self.rates = self.rates or j.get("rates")
        return j

    def longest(self, fits, lo_units=1):
        """The largest multiple of UNIT (up to --max-T) for which fits(T) holds; 0 when none does."""
        hi_cap = self.a.max_T // UNIT
        if not fits(lo_units * UNIT):
            return 0
        lo, hi = lo_units, lo_units * 2
        while hi <= hi_cap and fits(hi * UNIT):
            lo, hi = hi, hi * 2
        hi = min(hi, hi_cap + 1)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if fits(mid * UNIT) else (lo, mid)
        return lo * UNIT

    def tokens(self, T, vocab):
        p = os.path.join(self.tmp, "t%d.npy" % T)
        if not os.path.exists(p):
            np.save(p, np.random.default_rng(T).integers(0, vocab, size=(1, T + 1)).astype(np.int32))
        return p

    def grad(self, model, T, vocab, flags, probe):
        cmd = [self.a.longctx, "grad", "--model", model, "--tokens", self.tokens(T, vocab), "--plan", "auto"] + \
              self.dev + self.budget + self.dir + flags + (["--probe"] if probe else [])
        t0 = time.time()
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=self.a.timeout)
        if r.returncode:
            raise RuntimeError(r.stderr.strip()[-800:])
        j = last_json(r.stdout)
        j["wall_s"] = time.time() - t0
        return j


def flags_of(plan):
    """The command-line flags of a plan as `grad` reports it (what --plan auto chose there)."""
    out = []
    for key, flag in (("recompute", "--recompute"), ("offload", "--offload"), ("mlp_tiles", "--mlp-tiles"),
                      ("loss_tiles", "--loss-tiles"), ("chunk_mode", "--chunk-mode"), ("chunk_size", "--chunk-size"),
                      ("chunk_budget", "--chunk-budget"), ("kv_dtype", "--kv-dtype"),
                      ("kv_grad_dtype", "--kv-grad-dtype"), ("offload_model", "--offload-model"),
                      ("offload_optimizer", "--offload-optimizer")):
        v = plan.get(key)
        if v is None or (key in ("chunk_size", "chunk_budget") and v == 0):
            continue
        out += [flag, "auto" if key in ("mlp_tiles", "loss_tiles") and v == 0 else str(v)]
    return out


def hf_runs(model, T, timeout):
    """Whether HF's step (bf16, SDPA, checkpointing) runs at T on this GPU, in a process of its own."""
    code = ("import sys, numpy as np; sys.path.insert(0, %r); from gpu_step import run_hf; "
            "run_hf(%r, np.random.default_rng(0).integers(0, 1000, size=(1, %d)), 1)"
            % (os.path.dirname(os.path.abspath(__file__)), model, T + 1))
    try:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=timeout).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def device_peak(j):
    return j.get("gpu_pool_peak_bytes") or j["peak_bytes"]["device"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--longctx", required=True)
    ap.add_argument("--models", default="1b,8b-lora,8b-full")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--host-mem", default="")
    ap.add_argument("--device-mem", default="", help="default: the GPU's free memory (a CPU check gives one)")
    ap.add_argument("--offload-dir", default="")
    ap.add_argument("--max-T", type=int, default=1 << 23)
    ap.add_argument("--full-seconds", type=float, default=240)
    ap.add_argument("--timeout", type=int, default=600, help="seconds per longctx run")
    ap.add_argument("--no-hf", action="store_true")
    ap.add_argument("--json", default="")
    ap.add_argument("--commit", default=os.environ.get("LCX_COMMIT", "unknown"))
    a = ap.parse_args()
    out = {"gpu": "", "date": datetime.date.today().isoformat(), "commit": a.commit,
           "host_gib": None, "disk_gib": None, "models": [], "plans_equal": None, "peak_vs_plan_max_rel": None,
           "offload_overhead": None}
    info = subprocess.run([a.longctx, "info"], capture_output=True, text=True).stdout
    out["gpu"] = next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("cuda devices:")), "")
    out["host_gib"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    worst = 0.0
    with tempfile.TemporaryDirectory(dir=a.offload_dir or None) as tmp:
        out["disk_gib"] = shutil.disk_usage(tmp).total / 2**30
        b = Bench(a, tmp)
        made, hf = {}, {}  # per weights: their directory, HF's longest T
        for name in a.models.split(","):
            cfg, flags = MODELS[name]
            key = json.dumps(cfg, sort_keys=True)  # one set of weights per shape (8B: 32 GB on the disk)
            if key not in made:
                path = os.path.join(tmp, name + ".json")
                with open(path, "w") as f:
                    json.dump(cfg, f)
                made[key] = os.path.join(tmp, name)
                r = subprocess.run([a.longctx, "init", "--config", path, "--out", made[key], "--seed", "1"],
                                   capture_output=True, text=True)
                if r.returncode:  # (no room for the weights, say): this model fails, the others go on
                    out["models"].append({"model": name, "longest_T": 0, "init_error": r.stderr[-500:]})
                    del made[key]
                    continue
            model = made[key]
            row = {"model": name, "longest_T": 0, "how": None, "plan_T": 0, "full_T": 0, "full_step_s": None,
                   "plan_step_s": None, "tok_s": None, "hf_longest_T": None}
            row["plan_T"] = b.longest(lambda T: b.plan(model, T, flags) is not None)
            predicted = lambda T: (b.plan(model, T, flags) or {}).get("time", {}).get("step_seconds", 1e30)  # noqa
            row["full_T"] = b.longest(lambda T: predicted(T) <= a.full_seconds)
            try:  # the full step
                if row["full_T"]:
                    j = b.grad(model, row["full_T"], cfg["vocab_size"], flags, False)
                    p = b.plan(model, row["full_T"], flags, j["plan"])
                    row.update(plan=j["plan"], full_step_s=j["step_seconds"], plan_step_s=p["time"]["step_seconds"],
                               tok_s=row["full_T"] / j["step_seconds"])
                    worst = max(worst, abs(device_peak(j) / p["peak_bytes"]["device"] - 1))
                    row["longest_T"], row["how"] = row["full_T"], "full"
            except Exception as e:  # noqa: BLE001 - report and go on
                row["full_error"] = str(e)[:500]
            try:  # the probe at plan_T
                if row["plan_T"] > row["full_T"]:
                    j = b.grad(model, row["plan_T"], cfg["vocab_size"], flags, True)
                    p = b.plan(model, row["plan_T"], flags, j["plan"])
                    row.update(probe_plan=j["plan"], longest_T=row["plan_T"], how="probe",
                               probe_step_s_extrapolated=j.get("step_seconds_extrapolated"),
                               probe_plan_step_s=p["time"]["step_seconds"])
                    worst = max(worst, abs(device_peak(j) / p["peak_bytes"]["device"] - 1))
            except Exception as e:  # noqa: BLE001
                row["probe_error"] = str(e)[:500]
            if not a.no_hf and a.device == "cuda":  # (full backward: the 8B rows share one search)
                if key not in hf:
                    T, hf[key] = UNIT * 2, 0
                    while T <= a.max_T and hf_runs(model, T, a.timeout):
                        hf[key], T = T, T * 2
                row["hf_longest_T"] = hf[key]
            out["models"].append(row)
            print(json.dumps(row), flush=True)
    out["peak_vs_plan_max_rel"] = worst
    print(f"\n{'model':8} {'longest T':>10} {'how':>6} {'plan T':>9} {'full T':>9} {'step s':>8} {'plan s':>8} "
          f"{'tok/s':>8} {'HF T':>8}")
    for r in [r for r in out["models"] if "init_error" not in r]:
        f = lambda v, fmt: format(v, fmt) if v is not None else "-"  # noqa: E731
        print(f"{r['model']:8} {r['longest_T']:>10} {f(r['how'], '>6')} {r['plan_T']:>9} {r['full_T']:>9} "
              f"{f(r['full_step_s'], '8.2f')} {f(r['plan_step_s'], '8.2f')} {f(r['tok_s'], '8.0f')} "
              f"{f(r['hf_longest_T'], '>8')}")
    print(f"measured device peaks vs plan: largest relative difference {worst:.3f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0 if all(r["longest_T"] for r in out["models"]) else 1


if __name__ == "__main__":
    sys.exit(main())
