#!/usr/bin/python3
"""longctx vs PyTorch fp32 with gradient checkpointing: one forward+backward, same weights and tokens.

Baselines (--baseline):
  hf     (default) what a user would pick instead today: Hugging Face transformers'
         LlamaForCausalLM from PyPI (attn_implementation="sdpa", gradient checkpointing on
         every layer, fp32), run by .venv-hf/bin/python (scripts/install-hf-bench.sh makes it).
  eager  bench/torch_llama.py's own eager-attention Llama (per-layer checkpointing), on
         Debian's torch (/usr/bin/python3, torch 1.13): the older, weaker baseline.

For each T in --lengths this writes random tokens (1, T+1), runs `longctx grad --device cpu`
(default plan: recompute=full, i.e. per-block checkpointing like torch's, loss_tiles=auto;
--longctx-args adds flags) and bench/torch_llama.py as separate subprocesses, one after the
other (each one's memory measured alone, the torch one under an RLIMIT_AS cap and a
--torch-timeout), and prints a side-by-side table of step time, tokens/s, peak memory and
loss, then the goal lines of the old issue (at T = 4096: >= 10x faster, < 1/4 of torch's
step memory). Both sides run one warm-up step, then --repeat timed steps; the median counts.

    /usr/bin/python3 bench/compare_torch.py [--lengths 4096,16384,32768] [--repeat 3]
        [--baseline hf|eager] [--longctx build/bin/longctx] [--longctx-args '--plan auto']
        [--torch-mem-limit 20GiB] [--torch-timeout 900] [--json out.json]

Memory columns: "lc tracked" is longctx's own peak_bytes (device + host tiers, every buffer the
step allocates) from its JSON; "torch step mem" is the torch process's peak RSS (getrusage
ru_maxrss) minus its VmRSS after import and weight load, i.e. what the steps added.
"mem x less" = torch step mem / lc tracked. "peak RSS" is each whole process's ru_maxrss (from
wait4 for longctx): libraries included, so "RSS x less" = torch peak RSS / lc peak RSS mixes in
fixed costs (torch's import, ~0.7 GiB; longctx's CUDA libraries when built with them, ~0.25 GiB:
the "fixed RSS" line, a `longctx grad` on 16 tokens).
Exit status: 0 when everything ran (goals may still FAIL; a torch OOM or timeout is reported,
not an error), 1 on an error (longctx failed, torch failed otherwise, losses disagree), 2 on bad arguments.
"""
import argparse
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCH_SCRIPT = os.path.join(REPO, "bench", "torch_llama.py")
HF_PYTHON = os.path.join(REPO, ".venv-hf", "bin", "python")
SYS_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
GOAL_T, GOAL_SPEEDUP, GOAL_MEM_RATIO = 4096, 10.0, 0.25


def parse_bytes(s):
    m = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]?)(i?B)?\s*", s, re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"not a byte size: {s!r} (e.g. 20GiB, 512MiB)")
    return int(float(m.group(1)) * 1024 ** " KMGT".index((m.group(2) or " ").upper()))


def parse_lengths(s):
    try:
        out = [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--lengths wants comma-separated integers, got {s!r}")
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"--lengths wants positive integers, got {s!r}")
    return out


def fmt_bytes(n):
    if n is None:
        return "-"
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= div:
            return f"{n / div:.2f} {unit}"
    return f"{n} B"


def machine_line():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kib = {l.split(":")[0]: int(l.split()[1]) for l in f if l.split()[1:2] and l.split()[1].isdigit()}
        mem = f", {kib['MemTotal'] / (1 << 20):.1f} GiB RAM ({kib['MemAvailable'] / (1 << 20):.1f} available)"
    except (OSError, KeyError):
        pass
    return f"machine: {os.cpu_count()} cores, {model}{mem}, {load_line()}"


def load_line():
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1, 5, 15 min)"


def longctx_commit():
    """-> 'abc1234' or 'abc1234 + uncommitted changes in src/ ...' (the binary may hold them)."""
    try:
        head = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no", "--",
                                "src", "apps", "CMakeLists.txt", "cmake"], capture_output=True, text=True).stdout
    except OSError:
        return "unknown"
    files = [l[3:] for l in dirty.splitlines()]
    return head + (f" + uncommitted changes in {', '.join(files)}" if files else "")


def run_child(cmd, log_prefix, timeout, preexec_fn=None, env=None):
    """Runs cmd with stdout/stderr to files; reaps it with wait4 to get its own ru_maxrss.
    -> dict(rc, signal, stdout, stderr, maxrss_bytes, wall_seconds)."""
    out_path, err_path = log_prefix + ".out", log_prefix + ".err"
    t0 = time.monotonic()
    with open(out_path, "wb") as fo, open(err_path, "wb") as fe:
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL, preexec_fn=preexec_fn, env=env)
        killed_for_time = False
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if timeout and time.monotonic() - t0 > timeout and not killed_for_time:
                p.kill()
                killed_for_time = True
            time.sleep(0.02)
    p.returncode = os.waitstatus_to_exitcode(status)  # reaped here; keeps Popen from waiting again
    with open(out_path, errors="replace") as f:
        stdout = f.read()
    with open(err_path, errors="replace") as f:
        stderr = f.read()
    return dict(rc=p.returncode, signal=-p.returncode if p.returncode < 0 else 0, stdout=stdout, stderr=stderr,
                maxrss_bytes=ru.ru_maxrss * 1024, wall_seconds=time.monotonic() - t0, timed_out=killed_for_time)


def last_json(stdout):
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def tail(text, n=6):
    return "\n".join("    " + l for l in text.strip().splitlines()[-n:])


def longctx_base_rss(a, model_dir, tmp, vocab):
    """Peak RSS of `longctx grad` on 16 tokens: the process's fixed cost (binary, libraries, weights).
    Not subtracted from the runs' peaks: load-time buffers freed before the step inflate it."""
    toks = os.path.join(tmp, "tokens_base.npy")
    np.save(toks, np.random.default_rng(a.seed).integers(0, vocab, size=(1, 17), dtype=np.int32))
    r = run_child([a.longctx, "grad", "--device", "cpu", "--model", model_dir, "--tokens", toks],
                  os.path.join(tmp, "longctx_base"), a.timeout)
    return r["maxrss_bytes"] if r["rc"] == 0 else None


def run_longctx(a, model_dir, toks, log_prefix):
    r = run_child([a.longctx, "grad", "--device", "cpu", "--model", model_dir, "--tokens", toks,
                   "--repeat", str(a.repeat + 1)] + a.longctx_args.split(), log_prefix, a.timeout)
    j = last_json(r["stdout"]) if r["rc"] == 0 else None
    if j is None or "step_seconds" not in j:
        why = f"killed by signal {r['signal']}" if r["signal"] else f"exit {r['rc']}"
        return dict(ok=False, oom=r["signal"] == signal.SIGKILL, error=f"longctx grad failed ({why})",
                    detail=tail(r["stderr"] or r["stdout"]), maxrss_bytes=r["maxrss_bytes"])
    pb = j.get("peak_bytes", {})
    steps = j.get("step_seconds_all") or [j["step_seconds"]]
    timed = steps[1:] if len(steps) > 1 else steps  # the first step is the warm-up, as torch's
    return dict(ok=True, loss=j["loss"], step_seconds=statistics.median(timed), step_seconds_all=timed,
                warmup_seconds=steps[0] if len(steps) > 1 else None, tokens=j.get("tokens"),
                maxrss_bytes=r["maxrss_bytes"],
                tracked_bytes=(pb.get("device") or 0) + (pb.get("host") or 0),
                device_bytes=pb.get("device"), host_bytes=pb.get("host"),
                disk_bytes=pb.get("disk"), tags=pb.get("tags"), plan=j.get("plan"))


def run_torch(a, model_dir, toks, log_prefix):
    limit = a.torch_mem_limit

    def cap():  # runs in the child before exec
        if limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    cmd = [a.python, TORCH_SCRIPT, "--impl", a.baseline, "--model", model_dir, "--tokens", toks,
           "--repeat", str(a.repeat)]
    if a.torch_threads:
        cmd += ["--threads", str(a.torch_threads)]
    r = run_child(cmd, log_prefix, a.torch_timeout, preexec_fn=cap)
    j = last_json(r["stdout"])
    if r["timed_out"]:
        return dict(ok=False, oom=False, timeout=True, maxrss_bytes=r["maxrss_bytes"],
                    error=f"torch did not finish {a.repeat} + 1 steps within --torch-timeout {a.torch_timeout:g} s")
    if j is not None and j.get("oom"):
        return dict(ok=False, oom=True, error=f"torch out of memory: {j.get('error', '')}",
                    maxrss_bytes=r["maxrss_bytes"])
    if r["rc"] != 0 or j is None or "step_seconds" not in j:
        err = r["stderr"] + r["stdout"]
        memory_failure = r["signal"] in (signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS) or re.search(
            r"bad_alloc|out of memory|can't allocate|MemoryError|Cannot allocate", err, re.I)
        why = f"killed by signal {r['signal']}" if r["signal"] else f"exit {r['rc']}"
        return dict(ok=False, oom=bool(memory_failure), error=f"torch failed ({why})",
                    detail=tail(err), maxrss_bytes=r["maxrss_bytes"])
    return dict(ok=True, loss=j["loss"], step_seconds=j["step_seconds"], step_seconds_all=j.get("step_seconds_all"),
                maxrss_bytes=j["peak_rss_bytes"], rss_before_bytes=j["rss_before_bytes"], step_bytes=j["step_bytes"],
                wait4_maxrss_bytes=r["maxrss_bytes"], torch=j.get("torch"), transformers=j.get("transformers"),
                attn_implementation=j.get("attn_implementation"), threads=j.get("threads"), tokens=j.get("tokens"))


def failed_word(res):
    return "OOM" if res.get("oom") else "timeout" if res.get("timeout") else "ERR"


def tok_s(res, T):
    return f"{T / res['step_seconds']:.0f}" if res["ok"] else failed_word(res)


def print_table(rows):
    head = ["T", "lc step s", "torch step s", "speedup", "lc tok/s", "torch tok/s", "lc tracked", "torch step mem",
            "mem x less", "lc peak RSS", "torch peak RSS", "RSS x less", "lc loss", "torch loss", "loss rel diff"]
    cells = []
    for r in rows:
        lc, th = r["longctx"], r["torch"]
        bad, lbad = failed_word(th), failed_word(lc)
        both = lc["ok"] and th["ok"]
        cells.append([
            str(r["T"]),
            f"{lc['step_seconds']:.3f}" if lc["ok"] else lbad,
            f"{th['step_seconds']:.3f}" if th["ok"] else bad,
            f"{r['speedup']:.2f}x" if r["speedup"] is not None else "-",
            tok_s(lc, r["T"]),
            tok_s(th, r["T"]),
            fmt_bytes(lc["tracked_bytes"]) if lc["ok"] else lbad,
            fmt_bytes(th["step_bytes"]) if th["ok"] else bad,
            f"{1 / r['mem_ratio']:.1f}x" if r["mem_ratio"] else "-",
            fmt_bytes(lc["maxrss_bytes"]) if lc["ok"] else lbad,
            fmt_bytes(th["maxrss_bytes"]) if th["ok"] else bad,
            f"{th['maxrss_bytes'] / lc['maxrss_bytes']:.1f}x" if both else "-",
            f"{lc['loss']:.6f}" if lc["ok"] else lbad,
            f"{th['loss']:.6f}" if th["ok"] else bad,
            (f"{r['loss_rel_diff']:.1e}" + (" MISMATCH" if r["loss_mismatch"] else ""))
            if r["loss_rel_diff"] is not None else "-",
        ])
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)]
    line = lambda c: "  ".join(x.rjust(w) for x, w in zip(c, widths))
    print(line(head))
    print("  ".join("-" * w for w in widths))
    for c in cells:
        print(line(c))


def goal_lines(rows):
    for r in rows:
        at = f" at T={r['T']}" + ("" if r["T"] == GOAL_T else " (the issue's goal is stated at T=4096)")
        th = r["torch"]
        if r["speedup"] is not None:
            ok = r["speedup"] >= GOAL_SPEEDUP
            print(f"goal speedup >= 10x: {'PASS' if ok else 'FAIL'} ({r['speedup']:.1f}x){at}")
        else:
            print(f"goal speedup >= 10x: n/a (torch {failed_word(th)}){at}")
        if r["mem_ratio"] is not None:
            ok = r["mem_ratio"] < GOAL_MEM_RATIO
            print(f"goal memory < 1/4: {'PASS' if ok else 'FAIL'} ({r['mem_ratio']:.4f}){at}")
        elif th.get("oom") and r["longctx"]["ok"] and r["longctx"]["tracked_bytes"] * 4 < (r["torch_mem_limit"] or 0):
            print(f"goal memory < 1/4: PASS (torch OOM under a {fmt_bytes(r['torch_mem_limit'])} cap){at}")
        else:
            print(f"goal memory < 1/4: n/a (a run failed){at}")


def main(argv=None):
    ap = argparse.ArgumentParser(description="longctx vs PyTorch fp32 forward+backward (time, memory, loss)")
    ap.add_argument("--lengths", type=parse_lengths, default=[4096], help="comma-separated T values (default 4096)")
    ap.add_argument("--baseline", choices=("hf", "eager"), default="hf",
                    help="hf: transformers LlamaForCausalLM + SDPA (default); eager: bench/torch_llama.py's own")
    ap.add_argument("--repeat", type=int, default=3, help="timed steps per run; the median is reported")
    ap.add_argument("--longctx", default=os.path.join(REPO, "build", "bin", "longctx"), help="longctx binary")
    ap.add_argument("--config", default=os.path.join(REPO, "configs", "tiny.json"), help="model config.json")
    ap.add_argument("--seed", type=int, default=0, help="weights seed (tokens use seed + T)")
    ap.add_argument("--python", help="python with torch (and transformers for hf) for bench/torch_llama.py "
                    f"(default: {HF_PYTHON} for hf, {SYS_PYTHON} for eager)")
    ap.add_argument("--torch-mem-limit", type=parse_bytes, default=parse_bytes("20GiB"),
                    help="RLIMIT_AS of the torch process (0: none; default 20GiB)")
    ap.add_argument("--torch-threads", type=int, default=0, help="torch threads (default: os.cpu_count())")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per longctx run before it is killed")
    ap.add_argument("--torch-timeout", type=float, default=900,
                    help="seconds per torch run (one T) before it is killed and reported as a timeout")
    ap.add_argument("--loss-rtol", type=float, default=1e-4, help="relative loss difference flagged as a mismatch")
    ap.add_argument("--longctx-args", default="",
                    help="extra flags for longctx grad, e.g. '--plan auto --device-mem 256MiB'")
    ap.add_argument("--skip-torch", action="store_true", help="run longctx only")
    ap.add_argument("--json", help="also write every figure here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary model, tokens and logs")
    a = ap.parse_args(argv)
    if a.repeat < 1:
        ap.error("--repeat must be >= 1")
    if not (os.path.isfile(a.longctx) and os.access(a.longctx, os.X_OK)):
        print(f"compare_torch: {a.longctx}: no longctx binary (build it, or pass --longctx)", file=sys.stderr)
        return 1
    a.longctx = os.path.abspath(a.longctx)
    a.python = a.python or (HF_PYTHON if a.baseline == "hf" else SYS_PYTHON)
    if not a.skip_torch:
        want = "import torch, transformers" if a.baseline == "hf" else "import torch"
        v = subprocess.run([a.python, "-c", want + "; print(torch.__version__" +
                            (", transformers.__version__)" if a.baseline == "hf" else ")")],
                           capture_output=True, text=True)
        if v.returncode != 0:
            hint = " (scripts/install-hf-bench.sh makes .venv-hf)" if a.baseline == "hf" else ""
            print(f"compare_torch: {a.python}: cannot {want}{hint}\n{tail(v.stderr)}", file=sys.stderr)
            return 1
        versions = v.stdout.split()

    print(machine_line() + " at start")
    info = subprocess.run([a.longctx, "info"], capture_output=True, text=True)
    blas = [l for l in info.stdout.splitlines() if l.startswith(("longctx ", "blas:", "openmp threads"))]
    print("longctx: " + a.longctx + (" | " + " | ".join(blas) if blas else " | (info failed)"))
    print(f"longctx commit: {longctx_commit()}")
    print("longctx grad --device cpu " + (a.longctx_args or "(default plan: recompute=full, loss_tiles=auto)"))
    if a.skip_torch:
        print("torch: skipped")
    elif a.baseline == "hf":
        print(f"torch {versions[0]} + transformers {versions[1]}: LlamaForCausalLM.from_pretrained(dtype=float32, "
              f'attn_implementation="sdpa"), gradient checkpointing on (activation_checkpointing_enable()), use_cache=False; {a.python}')
    else:
        print(f"torch {versions[0]}: bench/torch_llama.py eager attention fp32, checkpoint per decoder layer; {a.python}")
    print(f"torch threads {a.torch_threads or os.cpu_count()}, RLIMIT_AS {fmt_bytes(a.torch_mem_limit)}, "
          f"timeout {a.torch_timeout:g} s per T; each side: 1 warm-up step + {a.repeat} timed, median reported")
    sys.stdout.flush()

    tmp = tempfile.mkdtemp(prefix="compare_torch.")
    errors, rows = [], []
    try:
        model_dir = os.path.join(tmp, "model")
        r = subprocess.run([a.longctx, "init", "--config", a.config, "--out", model_dir, "--seed", str(a.seed)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(f"compare_torch: longctx init failed:\n{tail(r.stderr + r.stdout)}", file=sys.stderr)
            return 1
        with open(os.path.join(model_dir, "config.json")) as f:
            vocab = int(json.load(f)["vocab_size"])
        a.lc_base_rss = longctx_base_rss(a, model_dir, tmp, vocab)
        print(f"longctx fixed RSS (peak of a grad on 16 tokens): {fmt_bytes(a.lc_base_rss)}", flush=True)
        for T in a.lengths:
            toks = os.path.join(tmp, f"tokens_{T}.npy")
            rng = np.random.default_rng(a.seed + T)
            np.save(toks, rng.integers(0, vocab, size=(1, T + 1), dtype=np.int32))
            print(f"T={T}: longctx ...", end="", flush=True)
            lc = run_longctx(a, model_dir, toks, os.path.join(tmp, f"longctx_{T}"))
            print(f" {lc['step_seconds']:.3f} s" if lc["ok"] else " failed", end="", flush=True)
            if a.skip_torch:
                th = dict(ok=False, oom=False, error="skipped", maxrss_bytes=None)
            else:
                print("; torch ...", end="", flush=True)
                th = run_torch(a, model_dir, toks, os.path.join(tmp, f"torch_{T}"))
                print(f" {th['step_seconds']:.3f} s" if th["ok"] else " " + failed_word(th), end="")
            print(flush=True)
            for name, res in (("longctx", lc), ("torch", th)):
                if not res["ok"] and res["error"] != "skipped":
                    print(f"  {name} at T={T}: {res['error']}" + ("\n" + res["detail"] if res.get("detail") else ""))
                    if not (name == "torch" and (res["oom"] or res.get("timeout"))):
                        errors.append(f"{name} at T={T}: {res['error']}")
            both = lc["ok"] and th["ok"]
            row = dict(T=T, longctx=lc, torch=th, torch_mem_limit=a.torch_mem_limit,
                       speedup=th["step_seconds"] / lc["step_seconds"] if both else None,
                       mem_ratio=lc["tracked_bytes"] / th["step_bytes"]
                       if both and lc["tracked_bytes"] and th["step_bytes"] > 0 else None,
                       loss_rel_diff=abs(lc["loss"] - th["loss"]) / max(abs(th["loss"]), 1e-30) if both else None)
            row["loss_mismatch"] = row["loss_rel_diff"] is not None and row["loss_rel_diff"] > a.loss_rtol
            if row["loss_mismatch"]:
                errors.append(f"T={T}: loss mismatch, longctx {lc['loss']!r} vs torch {th['loss']!r}")
            rows.append(row)
    finally:
        if a.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    print()
    print_table(rows)
    for r in rows:  # every timed step: on a shared machine the spread shows how noisy the medians are
        lc, th = r["longctx"], r["torch"]
        if lc["ok"] and th["ok"] and lc.get("step_seconds_all") and th.get("step_seconds_all"):
            a_, b_ = lc["step_seconds_all"], th["step_seconds_all"]
            print(f"T={r['T']} timed steps s: longctx {' '.join(f'{x:.3f}' for x in a_)}; torch "
                  f"{' '.join(f'{x:.3f}' for x in b_)}; best-vs-best speedup {min(b_) / min(a_):.2f}x")
    for r in rows:
        lc = r["longctx"]
        if lc["ok"] and lc.get("tags"):
            dev = ", ".join(f"{k} {fmt_bytes(v)}" for k, v in lc["tags"].get("device", {}).items())
            print(f"T={r['T']} longctx device peak by tag: {dev}; host {fmt_bytes(lc['host_bytes'])}")
            if lc.get("plan"):
                print(f"T={r['T']} longctx plan: " + " ".join(f"{k}={v}" for k, v in lc["plan"].items()))
    print()
    goal_lines(rows)
    print(machine_line() + " at end")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(machine=machine_line(), longctx_info=info.stdout, rows=rows), f, indent=1)
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
