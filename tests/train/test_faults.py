#!/usr/bin/python3
"""The faults of long runs, each injected for real: SIGTERM / SIGINT (a
preempted job), a disk that fills while a checkpoint is written, a non-finite
state, a data file or the offload directory gone or unreadable mid-run, and a
rank that hangs in a collective.

Disk and file faults are failed system calls from an LD_PRELOAD shim
(tests/tools/fault_shim.c, built as lib/libfault_shim.so next to bin/), so the
engine's own error paths run with no test hook inside it.

    /usr/bin/python3 tests/train/test_faults.py --longctx build/bin/longctx [--keep]

Prints one line per check and a final `N passed, M failed`; exits 1 on any failure.
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

RESULTS = []


def check(name, ok, detail=""):
    RESULTS.append(bool(ok))
    print(("PASS " if ok else "FAIL ") + name + (": " + detail if detail else ""), flush=True)


CONFIG = """
model:
  init: {vocab_size: 259, hidden_size: 32, intermediate_size: 56, num_hidden_layers: 2,
         num_attention_heads: 4, num_key_value_heads: 2, rope_theta: 10000.0, tie_word_embeddings: true}
data:
  kind: jsonl
  path: [%(d1)s, %(d2)s]
seq_len: 64
batch_size: 2
grad_accum: 2
steps: %(steps)d
lr: 0.003
warmup_steps: 2
seed: 3
out_dir: %(out)s
"""


class Env:
    def __init__(self, exe, d):
        self.exe, self.d = exe, d
        self.shim = os.path.normpath(os.path.join(os.path.dirname(exe), "..", "lib", "libfault_shim.so"))
        rng = random.Random(5)
        self.data = []
        for k, lines in ((1, 8), (2, 400)):  # the first file ends early: the second is opened mid-run
            p = os.path.join(d, "d%d.jsonl" % k)
            with open(p, "w") as f:
                for _ in range(lines):
                    f.write(json.dumps({"text": "".join(rng.choice("abcdefgh ,.") for _ in range(70))}) + "\n")
            self.data.append(p)

    def config(self, name, steps, extra=""):
        out = os.path.join(self.d, name)
        p = out + ".yaml"
        with open(p, "w") as f:
            f.write(CONFIG % dict(d1=self.data[0], d2=self.data[1], steps=steps, out=out) + extra)
        return p, out

    def run(self, args, fault=None, **kw):
        env = dict(os.environ)
        if fault:
            env.update({k: str(v) for k, v in fault.items()}, LD_PRELOAD=self.shim)
        return subprocess.run([self.exe] + args, capture_output=True, text=True, timeout=600, env=env, **kw)


def losses(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [(r["step"], r["loss"]) for r in map(json.loads, f)]


def read(path):
    with open(path, "rb") as f:
        return f.read()


def checkpoints(out):
    root = os.path.join(out, "checkpoints")
    return sorted(os.listdir(root)) if os.path.isdir(root) else []


def error_line(r):
    lines = [l for l in r.stderr.splitlines() if "longctx: error" in l]
    return lines[-1] if lines else r.stderr.strip()[-300:]


def reference(env, steps):
    cfg, out = env.config("ref", steps)
    r = env.run(["train", cfg])
    check("reference run", r.returncode == 0, error_line(r))
    return losses(out), read(os.path.join(out, "model.safetensors"))


def wait_rows(out, n, p, timeout=300):
    path = os.path.join(out, "metrics.jsonl")
    deadline = time.time() + timeout
    while p.poll() is None and time.time() < deadline:
        try:
            with open(path) as f:
                if f.read().count("\n") >= n:
                    return True
        except OSError:
            pass
        time.sleep(0.001)
    return False


def test_stop_signal(env, steps, ref, sig, rows, name):
    """A signal mid-run: exit 0 with the checkpoint of the last completed step
    within the grace period; resume=true then gives the uninterrupted run's
    losses and final weights bit for bit."""
    cfg, out = env.config(name, steps)
    p = subprocess.Popen([env.exe, "train", cfg], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    landed = wait_rows(out, rows, p)
    t0 = time.time()
    p.send_signal(sig)
    so, se = p.communicate(timeout=120)
    took = time.time() - t0
    done = len(losses(out))
    sname = signal.Signals(sig).name
    check("%s mid-run: exit 0 within the grace period, 'stopped' said" % sname,
          landed and p.returncode == 0 and took < 30 and "stopped: the checkpoint of step" in so,
          "rc=%s took=%.1fs %s" % (p.returncode, took, se.strip()[-300:]))
    ck = checkpoints(out)
    check("%s: the checkpoint of the last completed step (%d) is complete" % (sname, done),
          ck == ["step_%08d" % done] and os.path.exists(os.path.join(out, "checkpoints", ck[0], "COMPLETE")),
          str(ck))
    r = env.run(["train", cfg, "resume=true"])
    got = losses(out)
    check("%s then resume=true: the uninterrupted run's losses and weights, bit for bit" % sname,
          r.returncode == 0 and got == ref[0] and read(os.path.join(out, "model.safetensors")) == ref[1],
          "rc=%d, first difference %s" % (r.returncode, next(((a, b) for a, b in zip(got, ref[0]) if a != b),
                                                              None)))


def test_grace_period(env, steps, ref):
    """A stop whose checkpoint cannot be written within grace_seconds (every
    write to the checkpoint directory is slowed down) ends the process at the
    deadline; the earlier complete checkpoint stays the newest."""
    cfg, out = env.config("grace", steps, "save_every: 2\ngrace_seconds: 1.0\n")
    fault = {"FAULT_PATH": os.path.join(out, "checkpoints"), "FAULT_WRITE_DELAY_MS": 100}
    envv = dict(os.environ, LD_PRELOAD=env.shim, **{k: str(v) for k, v in fault.items()})
    p = subprocess.Popen([env.exe, "train", cfg], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=envv)
    wait_rows(out, 3, p)  # steps 1-2 saved (slowly), step 3 done
    while p.poll() is None and len(losses(out)) < 3:
        time.sleep(0.01)
    t0 = time.time()
    p.send_signal(signal.SIGTERM)
    _, se = p.communicate(timeout=120)
    took = time.time() - t0
    check("a stop slower than grace_seconds ends at the deadline, saying so",
          p.returncode == 128 + signal.SIGTERM and "grace period" in se and took < 10,
          "rc=%s took=%.1fs %s" % (p.returncode, took, se.strip()[-300:]))
    done = [c for c in checkpoints(out) if ".tmp" not in c]  # a temp dir is never taken for one
    check("... the newest complete checkpoint is the one before the stop",
          done == ["step_00000002"] and os.path.exists(os.path.join(out, "checkpoints", done[0], "COMPLETE")),
          str(checkpoints(out)))
    r = env.run(["train", cfg, "resume=true"])
    check("... and resumes to the uninterrupted run, bit for bit",
          r.returncode == 0 and losses(out) == ref[0] and read(os.path.join(out, "model.safetensors")) == ref[1]
          and [c for c in checkpoints(out) if ".tmp" in c] == [], error_line(r))


def checkpoint_bytes(out):
    d = os.path.join(out, "checkpoints", checkpoints(out)[-1])
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))


def test_disk_full(env, steps, ref):
    """The disk fills while the third checkpoint is written: the run stops
    with one line naming the step and the last complete checkpoint, which is
    complete and resumes bit-exactly; nothing half-written is left behind.
    With on_checkpoint_error: continue the run goes on."""
    cfg, out = env.config("sized", 1)
    env.run(["train", cfg, "save_every=1"])
    one = checkpoint_bytes(out)

    cfg, out = env.config("full", steps, "save_every: 1\nkeep_last: 5\n")
    fault = {"FAULT_PATH": os.path.join(out, "checkpoints"), "FAULT_WRITE_BYTES": 2 * one + one // 2}
    r = env.run(["train", cfg], fault)
    err = error_line(r)
    check("disk full during a checkpoint: the run stops, naming the step and the last complete one",
          r.returncode != 0 and "step 3" in err and "No space left on device" in err
          and "step_00000002" in err and len(err.splitlines()) == 1, err)
    ck = checkpoints(out)
    check("only complete checkpoints remain (no temp, no partial)", ck == ["step_00000001", "step_00000002"],
          str(ck))
    r = env.run(["train", cfg, "resume=true"])
    check("the last complete checkpoint resumes to the uninterrupted run, bit for bit",
          r.returncode == 0 and losses(out) == ref[0] and read(os.path.join(out, "model.safetensors")) == ref[1],
          error_line(r))

    cfg, out = env.config("full_go_on", steps, "save_every: 1\non_checkpoint_error: continue\n")
    fault["FAULT_PATH"] = os.path.join(out, "checkpoints")
    r = env.run(["train", cfg], fault)
    warned = r.stdout.count("training goes on (on_checkpoint_error: continue)")
    check("on_checkpoint_error: continue: every step trains, each failed save warned",
          r.returncode == 0 and len(losses(out)) == steps and warned == steps - 2 and losses(out) == ref[0],
          "rc=%d warned=%d %s" % (r.returncode, warned, error_line(r)))


def poison_first_weight(path):
    """A NaN in the first tensor of a safetensors file (its header read here)."""
    import struct
    with open(path, "r+b") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        begin = min(v["data_offsets"][0] for k, v in header.items() if k != "__metadata__")
        f.seek(8 + n + begin)
        f.write(struct.pack("<f", float("nan")))


def test_non_finite(env):
    """A non-finite value in the trained state (here a checkpoint corrupted on
    disk, resumed from): the steps are skipped as non-finite, and no
    checkpoint is written from that state."""
    cfg, out = env.config("poison", 6, "save_every: 1\nkeep_last: 5\n")
    r = env.run(["train", cfg, "stop_after=2"])
    poison_first_weight(os.path.join(out, "checkpoints", "step_00000002", "model.safetensors"))
    r = env.run(["train", cfg, "resume=true"])
    err = error_line(r)
    check("a poisoned state is never checkpointed: the run stops, naming the value and the last checkpoint",
          r.returncode != 0 and "non-finite value" in err and "step 3" in err and "step_00000002" in err
          and "update skipped" in r.stdout, err)
    check("... no checkpoint after the poisoned one", checkpoints(out) == ["step_00000001", "step_00000002"],
          str(checkpoints(out)))
    # a corrupt state.json (a step that is not a whole number) is an error naming the file
    st = os.path.join(out, "checkpoints", "step_00000001", "state.json")
    shutil.rmtree(os.path.join(out, "checkpoints", "step_00000002"))
    with open(st) as f:
        state = json.load(f)
    state["step"] = "1"
    with open(st, "w") as f:
        json.dump(state, f)
    r = env.run(["train", cfg, "resume=true"])
    err = error_line(r)
    check("a corrupt state.json: one error naming the file and the field", r.returncode != 0 and st in err
          and "'step' must be a whole number" in err, err)


def test_data_faults(env, steps):
    cfg, out = env.config("data_gone", steps)
    r = env.run(["train", cfg], {"FAULT_PATH": env.data[1], "FAULT_OPEN": 0})
    err = error_line(r)
    check("a data file gone mid-run: a clear error naming it, after some steps",
          r.returncode != 0 and env.data[1] in err and "cannot open" in err and len(losses(out)) >= 1, err)
    cfg, out = env.config("data_eio", steps)
    r = env.run(["train", cfg], {"FAULT_PATH": env.data[1], "FAULT_READ_BYTES": 500})
    err = error_line(r)
    check("a data file unreadable mid-run (EIO): an error naming it, never taken for its end",
          r.returncode != 0 and env.data[1] in err and "Input/output error" in err, err)


def test_offload_faults(env, steps):
    off = os.path.join(env.d, "offload", "made")  # does not exist yet: made on first use
    cfg, out = env.config("off_ok", 2, "offload: disk\noffload_dir: %s\n" % off)
    r = env.run(["train", cfg])
    check("offload_dir is created when it does not exist", r.returncode == 0 and os.path.isdir(off),
          error_line(r))
    cfg, out = env.config("off_full", steps, "offload: disk\noffload_dir: %s\n" % off)
    r = env.run(["train", cfg], {"FAULT_PATH": off, "FAULT_WRITE_BYTES": 1000})
    err = error_line(r)
    check("no room on the offload disk: refused before the first step, naming the directory and the size",
          r.returncode != 0 and off in err and "cannot reserve" in err and "No space left" in err
          and (not os.path.exists(os.path.join(out, "metrics.jsonl")) or losses(out) == []), err)
    cfg, out = env.config("off_eio", steps, "offload: disk\noffload_dir: %s\n" % off)
    r = env.run(["train", cfg], {"FAULT_PATH": off, "FAULT_READ_BYTES": 200000})
    err = error_line(r)
    check("the offload directory unreadable mid-run (EIO): an error naming it",
          r.returncode != 0 and off in err and "Input/output error" in err and len(losses(out)) >= 1, err)
    # gone mid-run: the second stage of a curriculum makes new offload files;
    # the directory is removed while step 1's checkpoint is written (slowly)
    gone = os.path.join(env.d, "offload", "gone")
    extra = ("offload: disk\noffload_dir: %s\nsave_every: 1\ncurriculum:\n" % gone +
             "  - {until_step: 2, seq_len: 32}\n  - {until_step: 4, seq_len: 64}\n")
    cfg, out = env.config("off_gone", 4, extra)
    fault = {"FAULT_PATH": os.path.join(out, "checkpoints"), "FAULT_WRITE_DELAY_MS": 50}
    p = subprocess.Popen([env.exe, "train", cfg], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, LD_PRELOAD=env.shim, **{k: str(v) for k, v in fault.items()}))
    wait_rows(out, 1, p)
    shutil.rmtree(gone, ignore_errors=True)
    _, se = p.communicate(timeout=300)
    err = [l for l in se.splitlines() if "error" in l]
    err = err[-1] if err else se[-300:]
    check("the offload directory gone mid-run: the steps in flight go on (their files are open), a new "
          "stage stops with an error naming it",
          p.returncode != 0 and gone in err and "gone now" in err and len(losses(out)) == 2, err)


def mpirun(n):
    # one OpenMP thread per rank and ranks that yield when idle: ranks share 2 cores
    cmd = ["mpirun", "--oversubscribe", "-x", "OMP_NUM_THREADS=1", "--mca", "mpi_yield_when_idle", "1", "-np", str(n)]
    if os.geteuid() == 0:
        cmd.insert(1, "--allow-run-as-root")
    return cmd


def rank_pids(mpirun_pid):
    """{rank: pid} of the ranks mpirun started (read from their environment)."""
    out = {}
    for pid in os.listdir("/proc"):
        try:
            with open("/proc/%s/stat" % pid) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid != mpirun_pid:
                continue
            with open("/proc/%s/environ" % pid, "rb") as f:
                env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
            out[int(env[b"OMPI_COMM_WORLD_RANK"])] = int(pid)
        except (OSError, ValueError, KeyError, IndexError):
            continue
    return out


def test_ranks(env, steps):
    """Across 2 ranks: SIGUSR1 to mpirun (which forwards it to every rank) and
    SIGTERM to one rank alone (as a scheduler's signals may land at different
    moments) both stop every rank after the same step, with one checkpoint that
    resumes bit-exactly; and the watchdog ends a job whose rank hangs."""
    cfg, out = env.config("ranks_ref", steps)
    r = subprocess.run(mpirun(2) + [env.exe, "train", cfg], capture_output=True, text=True, timeout=600)
    check("2 ranks: reference run", r.returncode == 0, error_line(r))
    ref = losses(out), read(os.path.join(out, "model.safetensors"))
    for how in ("SIGUSR1 to mpirun", "SIGTERM to rank 1 alone"):
        cfg, out = env.config("ranks_" + how.split()[0].lower(), steps)
        p = subprocess.Popen(mpirun(2) + [env.exe, "train", cfg], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        landed = wait_rows(out, 2, p)
        if how.startswith("SIGUSR1"):
            p.send_signal(signal.SIGUSR1)
        else:
            pids = rank_pids(p.pid)
            landed = landed and 1 in pids
            if 1 in pids:
                os.kill(pids[1], signal.SIGTERM)
        so, se = p.communicate(timeout=120)
        done = len(losses(out))
        check("2 ranks, %s: every rank stops, exit 0, the checkpoint of step %d" % (how, done),
              landed and p.returncode == 0 and checkpoints(out) == ["step_%08d" % done],
              "rc=%s %s %s" % (p.returncode, checkpoints(out), se.strip()[-300:]))
        r = subprocess.run(mpirun(2) + [env.exe, "train", cfg, "resume=true"], capture_output=True, text=True,
                           timeout=600)
        check("2 ranks, %s, then resume=true: the uninterrupted run, bit for bit" % how,
              r.returncode == 0 and losses(out) == ref[0] and read(os.path.join(out, "model.safetensors")) == ref[1],
              error_line(r))
    # the disk fills while the ranks write their shards of step 3
    cfg, out = env.config("ranks_full", steps, "save_every: 1\nkeep_last: 5\n")
    r = subprocess.run(mpirun(2) + [env.exe, "train", cfg, "stop_after=1"], capture_output=True, text=True,
                       timeout=600)
    d1 = os.path.join(out, "checkpoints", "step_00000001")
    one = max(os.path.getsize(os.path.join(d1, f)) for f in os.listdir(d1)) if r.returncode == 0 else 0
    shutil.rmtree(out)
    fault = {"FAULT_PATH": os.path.join(out, "checkpoints"), "FAULT_WRITE_BYTES": int(2.5 * one)}
    r = subprocess.run(mpirun(2) + [env.exe, "train", cfg], capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, LD_PRELOAD=env.shim, **{k: str(v) for k, v in fault.items()}))
    err = error_line(r)
    check("2 ranks, the disk full while the shards of step 3 are written: the job stops naming the step, "
          "the complete checkpoints stay", r.returncode != 0 and "step 3" in err and "not written" in err
          and checkpoints(out) == ["step_00000001", "step_00000002"], err + " " + str(checkpoints(out)))
    r = subprocess.run(mpirun(2) + [env.exe, "train", cfg, "resume=true"], capture_output=True, text=True,
                       timeout=600)
    check("... and resumes from step 2's shards to the uninterrupted run, bit for bit",
          r.returncode == 0 and losses(out) == ref[0] and read(os.path.join(out, "model.safetensors")) == ref[1],
          error_line(r))
    t0 = time.time()
    r = subprocess.run(mpirun(2) + [env.exe, "comm-check", "--watchdog", "2", "--hang-rank", "1"],
                       capture_output=True, text=True, timeout=120)
    took = time.time() - t0
    err = [l for l in r.stderr.splitlines() if "watchdog" in l]
    check("a hung rank: the watchdog ends the job within its limit, naming the rank and the collective",
          r.returncode != 0 and took < 30 and err and "rank 0 of 2" in err[0] and "allreduce" in err[0],
          "rc=%d took=%.1fs %s" % (r.returncode, took, (err or [r.stderr[-300:]])[0]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--longctx", required=True)
    ap.add_argument("--keep", action="store_true")
    args, _ = ap.parse_known_args()
    d = tempfile.mkdtemp(prefix="longctx-faults-")
    try:
        env = Env(os.path.abspath(args.longctx), d)
        check("fault shim built", os.path.exists(env.shim), env.shim)
        steps = 8
        ref = reference(env, steps)
        test_stop_signal(env, steps, ref, signal.SIGTERM, 2, "term")
        test_stop_signal(env, steps, ref, signal.SIGINT, 5, "int")
        test_grace_period(env, steps, ref)
        test_disk_full(env, steps, ref)
        test_non_finite(env)
        test_data_faults(env, steps)
        test_offload_faults(env, steps)
        if shutil.which("mpirun"):
            test_ranks(env, steps)
    finally:
        if not args.keep:
            shutil.rmtree(d, ignore_errors=True)
    failed = RESULTS.count(False)
    print("%d passed, %d failed" % (len(RESULTS) - failed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
