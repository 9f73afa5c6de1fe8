#!/usr/bin/env python3
"""gpu_check.sh part `report`: docs/gpu/step.json's figures from the other parts' outputs in --out
(ops.log, grad.json, attention.json, step-rows.json), written to OUT/step.json; copy it to docs/gpu/ and
commit it. Missing parts leave their fields null."""
import argparse
import datetime
import json
import os
import re
import subprocess


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def gtest_counts(log):
    try:
        text = open(log, errors="replace").read()
    except OSError:  # gpu_check.sh may have moved a passed part's log into logs.tar.gz
        try:
            import tarfile
            with tarfile.open(os.path.join(os.path.dirname(log), "logs.tar.gz")) as t:
                m = next(x for x in t.getmembers() if x.name.endswith(os.path.basename(log)))
                text = t.extractfile(m).read().decode("utf-8", "replace")
        except Exception:  # noqa: BLE001
            return None, None
    ran = re.search(r"\[==========\] (\d+) tests? from .* ran", text)
    failed = re.search(r"\[  FAILED  \] (\d+) tests?, listed below", text)
    total = int(ran.group(1)) if ran else None
    return (int(failed.group(1)) if failed else (0 if total is not None else None)), total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--commit", default="unknown")
    a = ap.parse_args()
    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30).stdout.strip().splitlines()[0]
    except Exception:  # noqa: BLE001
        gpu = None
    ops_failed, ops_total = gtest_counts(os.path.join(a.out, "ops.log"))
    grad = read_json(os.path.join(a.out, "grad.json")) or {}
    attention = read_json(os.path.join(a.out, "attention.json")) or []
    step = read_json(os.path.join(a.out, "step-rows.json")) or []
    keys = ("T", "plan", "longctx_tok_s", "mfu", "hf_tok_s", "longctx_peak_gib", "hf_peak_gib")
    doc = {
        "gpu": gpu, "date": datetime.date.today().isoformat(), "commit": a.commit,
        "parity": {"ops_failed": ops_failed, "ops_total": ops_total,
                   "cpu_fp32_max_rel": grad.get("cpu_fp32_max_rel"), "bf16_loss_rel": grad.get("bf16_loss_rel"),
                   "bf16_grad_max_rel": grad.get("bf16_grad_max_rel"), "hf_loss_rel": grad.get("hf_loss_rel"),
                   "hf_grad_max_rel": grad.get("hf_grad_max_rel")},
        "attention": [{k: r.get(k) for k in ("T", "head_dim", "nkv", "longctx_tflops", "torch_tflops",
                                             "torch_backend")} for r in attention],
        "step": [{k: r.get(k) for k in keys} for r in step],
    }
    with open(os.path.join(a.out, "step.json"), "w") as f:
        json.dump(doc, f, indent=1)
    print(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
