#!/usr/bin/python3
"""Qwen3-, Mistral- and Qwen2-like models (q/k norms, biases, head_dim != hidden/heads, sliding windows shorter
than the sequence, YaRN) through `longctx grad` under every memory plan and chunk mode, context parallelism
under mpirun -np 2 (every CP kind, SeCO across ranks, ZeRO-3), `longctx plan` against the measured peaks,
LoRA with the biases and norms frozen, and `train` with model.override (the exported config.json carries it).
Each must give the plain one-rank step's loss and gradients.

    /usr/bin/python3 tests/model/test_families_cli.py --longctx build/bin/longctx [--keep]

Prints one line per check and a final `N passed, M failed`; exits 1 on any failure.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import llama_ref  # noqa: E402

RESULTS = []

QWEN3 = dict(architectures=["Qwen3ForCausalLM"], model_type="qwen3", vocab_size=97, hidden_size=48,
             intermediate_size=80, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             head_dim=16, attention_bias=True, use_sliding_window=True, sliding_window=13,
             layer_types=["sliding_attention", "full_attention"], rms_norm_eps=1e-6,
             max_position_embeddings=512, tie_word_embeddings=False,
             rope_parameters=dict(rope_type="yarn", rope_theta=10000.0, factor=4.0,
                                  original_max_position_embeddings=32))
MISTRAL = dict(architectures=["MistralForCausalLM"], model_type="mistral", vocab_size=97, hidden_size=48,
               intermediate_size=80, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
               head_dim=10, sliding_window=11, rms_norm_eps=1e-5, rope_theta=10000.0,
               max_position_embeddings=512, tie_word_embeddings=True)
QWEN2 = dict(architectures=["Qwen2ForCausalLM"], model_type="qwen2", vocab_size=64, hidden_size=32,
             intermediate_size=56, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             rms_norm_eps=1e-6, rope_theta=10000.0, max_position_embeddings=512, tie_word_embeddings=True,
             use_sliding_window=True, sliding_window=20, max_window_layers=1)

PLAIN = ["--recompute", "none", "--mlp-tiles", "1", "--loss-tiles", "1"]
PLANS = {
    "recompute full": ["--recompute", "full"],
    "selective, offload host, mlp tiles 3": ["--recompute", "selective", "--offload", "host", "--mlp-tiles", "3"],
    "none, offload disk, loss tiles 4": ["--recompute", "none", "--offload", "disk", "--loss-tiles", "4"],
}
CHUNKED = {
    "seco 16": ["--chunk-mode", "seco", "--chunk-size", "16"],
    "seco 16, selective, pages on the host": ["--chunk-mode", "seco", "--chunk-size", "16", "--recompute",
                                              "selective", "--offload", "host"],
    "seco 10 (padded), pages on disk, mlp tiles": ["--chunk-mode", "seco", "--chunk-size", "10", "--offload",
                                                   "disk", "--mlp-tiles", "2"],
}


def check(name, ok, detail=""):
    RESULTS.append(bool(ok))
    print(("PASS " if ok else "FAIL ") + name + (": " + detail if detail else ""), flush=True)


def run(cmd, timeout=600):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def mpirun(n):
    cmd = ["mpirun", "--oversubscribe", "-x", "OMP_NUM_THREADS=1", "--mca", "mpi_yield_when_idle", "1", "-np", str(n)]
    if os.geteuid() == 0:
        cmd.insert(1, "--allow-run-as-root")
    return cmd


def grad(exe, model, toks, out, flags, prefix=()):
    r = run(list(prefix) + [exe, "grad", "--model", model, "--tokens", toks, "--out", out] + flags)
    if r.returncode:
        return None, r.stderr.strip()[-300:]
    return json.loads(r.stdout.strip().splitlines()[-1]), ""


def compare(a, b, rtol=1e-5):
    """Largest |a - b| of any gradient over the largest |b|, and whether the names agree."""
    ga, gb = llama_ref.read_safetensors(a)[0], llama_ref.read_safetensors(b)[0]
    if set(ga) != set(gb):
        return False, "different tensors: %s" % sorted(set(ga) ^ set(gb))[:4]
    worst = max(float(np.abs(np.asarray(ga[k], np.float64) - np.asarray(gb[k], np.float64)).max()) for k in ga)
    big = max(float(np.abs(np.asarray(gb[k], np.float64)).max()) for k in gb)
    return worst <= rtol * big, "max diff %.3g of %.3g" % (worst, big)


def same_step(name, got, ref_loss, out, ref_out, err):
    if got is None:
        check(name, False, err)
        return
    ok, detail = compare(out, ref_out)
    rel = abs(got["loss"] - ref_loss) / abs(ref_loss)
    check(name + ": the plain step's loss and every gradient", ok and rel <= 1e-5,
          "%s, loss rel %.2g" % (detail, rel))


def test_plans(exe, d, name, model, toks2, toks1):
    """Every plan on B = 2, every chunk mode on B = 1, against the plain step on the same tokens."""
    for toks, plans, b in ((toks2, PLANS, 2), (toks1, CHUNKED, 1)):
        ref = os.path.join(d, "%s_ref%d.safetensors" % (name, b))
        j, err = grad(exe, model, toks, ref, PLAIN)
        if not j:
            check("%s: plain step B=%d" % (name, b), False, err)
            continue
        for what, flags in plans.items():
            out = os.path.join(d, "%s_plan.safetensors" % name)
            got, err = grad(exe, model, toks, out, flags + (["--offload-dir", d] if "disk" in flags else []))
            same_step("%s %s (B=%d)" % (name, what, b), got, j["loss"], out, ref, err)
        if b == 1:  # SpaCO: a random subset of chunks backpropagated; the logged loss is the full forward's
            got, err = grad(exe, model, toks, os.path.join(d, "spaco.safetensors"),
                            ["--chunk-mode", "spaco", "--chunk-size", "16", "--chunk-budget", "2"])
            check("%s spaco: the whole forward's loss" % name,
                  got is not None and abs(got["loss"] - j["loss"]) <= 1e-5 * abs(j["loss"]), err)


def test_lora(exe, d, name, model, toks1):
    """LoRA on every module: biases and norms frozen (no gradient), the same adapters' gradients in chunks."""
    flags = ["--lora-rank", "2", "--lora-targets", "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"]
    a, b = os.path.join(d, "lora_a.safetensors"), os.path.join(d, "lora_b.safetensors")
    ja, err = grad(exe, model, toks1, a, flags + PLAIN)
    jb, err2 = grad(exe, model, toks1, b, flags + CHUNKED["seco 16, selective, pages on the host"])
    if not ja or not jb:
        check("%s lora runs" % name, False, err + err2)
        return
    names = set(llama_ref.read_safetensors(a)[0])
    frozen = [n for n in names if "lora_" not in n]
    check("%s lora: gradients of the adapters only (biases and norms frozen)" % name,
          names and not frozen and all("base_model.model." in n for n in names), str(sorted(frozen)[:4]))
    same_step("%s lora in seco chunks" % name, jb, ja["loss"], b, a, "")


def test_cp(exe, d, name, model, toks2, toks1, kinds):
    """mpirun -np 2 against one rank: every CP kind, SeCO across ranks, ZeRO-3."""
    ref2, ref1 = os.path.join(d, "%s_ref2.safetensors" % name), os.path.join(d, "%s_ref1.safetensors" % name)
    j2, e2 = grad(exe, model, toks2, ref2, PLAIN)
    j1, e1 = grad(exe, model, toks1, ref1, PLAIN)
    if not j2 or not j1:
        check("%s one-rank references" % name, False, e2 + e1)
        return
    runs = [(k, []) for k in kinds] + [("ulysses", ["--zero", "3"])]
    for kind, extra in runs:
        out = os.path.join(d, "%s_cp.safetensors" % name)
        got, err = grad(exe, model, toks2, out, ["--cp-kind", kind] + extra, mpirun(2))
        same_step("%s cp %s%s -np 2" % (name, kind, " ".join([""] + extra)), got, j2["loss"], out, ref2, err)
    out = os.path.join(d, "%s_cp_seco.safetensors" % name)
    got, err = grad(exe, model, toks1, out, ["--chunk-mode", "seco", "--chunk-size", "16"], mpirun(2))
    same_step("%s seco 16 across 2 ranks" % name, got, j1["loss"], out, ref1, err)


def test_plan_vs_grad(exe, d, name, model):
    """`longctx plan --json` predicts what `grad` measures; weights and gradients to the byte."""
    toks = os.path.join(d, "plan_tokens.npy")
    np.save(toks, np.random.default_rng(3).integers(0, 64, size=(1, 201)).astype(np.int32))
    for flags in (["--recompute", "selective", "--offload", "host"], ["--chunk-mode", "seco", "--chunk-size", "64"]):
        g = run([exe, "grad", "--model", model, "--tokens", toks] + flags)
        p = run([exe, "plan", "--model", model, "--seq-len", "200", "--json",
                 "--rates", '{"gemm_gflops": 10, "attn_gflops": 5}'] + flags)
        if g.returncode or p.returncode:
            check("%s plan vs grad %s" % (name, flags), False, (g.stderr + p.stderr)[-300:])
            continue
        meas = json.loads(g.stdout.strip().splitlines()[-1])["peak_bytes"]
        pred = json.loads(p.stdout.strip().splitlines()[-1])["peak_bytes"]
        exact = all(meas["tags"]["device"].get(t) == pred["tags"]["device"].get(t) for t in ("weights", "grads"))
        close = all(abs(meas[t] - pred[t]) <= 0.05 * max(pred[t], 1) for t in ("device", "host"))
        check("%s plan %s: weights and grads to the byte, tiers within 5%%" % (name, " ".join(flags)),
              exact and close, "measured %s predicted %s" % (json.dumps(meas)[:300], json.dumps(pred)[:300]))


TRAIN = """
model:
  path: %(model)s
data:
  kind: tokens
  path: %(tokens)s
seq_len: 40
batch_size: 2
steps: 3
lr: 0.003
warmup_steps: 1
seed: 5
out_dir: %(out)s
"""


def test_override(exe, d, model):
    """model.override (dotted keys) trains what a config.json with those fields trains, bit for bit, and the
    exported config.json carries them with the model type and its fields."""
    toks = os.path.join(d, "train_tokens.npy")
    np.save(toks, np.random.default_rng(4).integers(0, 64, size=4000).astype(np.int32))
    edited = os.path.join(d, "qwen2_yarn")
    shutil.copytree(model, edited)
    cfg = json.load(open(os.path.join(model, "config.json")))
    cfg["rope_scaling"] = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32}
    cfg["rope_theta"] = 20000.0
    json.dump(cfg, open(os.path.join(edited, "config.json"), "w"))
    outs = {}
    extra_override = ["model.override.rope_scaling.rope_type=yarn", "model.override.rope_scaling.factor=4",
                      "model.override.rope_scaling.original_max_position_embeddings=32",
                      "model.override.rope_theta=20000.0"]
    for tag, m, extra in (("override", model, extra_override), ("edited", edited, [])):
        out = os.path.join(d, "train_" + tag)
        y = os.path.join(d, tag + ".yaml")
        open(y, "w").write(TRAIN % dict(model=m, tokens=toks, out=out))
        r = run([exe, "train", y] + extra)
        check("train %s runs" % tag, r.returncode == 0, r.stderr.strip()[-300:])
        outs[tag] = out
    try:
        la = [json.loads(l)["loss"] for l in open(os.path.join(outs["override"], "metrics.jsonl"))]
        lb = [json.loads(l)["loss"] for l in open(os.path.join(outs["edited"], "metrics.jsonl"))]
        exp = json.load(open(os.path.join(outs["override"], "config.json")))
    except (OSError, ValueError) as e:
        check("train outputs readable", False, str(e))
        return
    check("model.override trains what the edited config.json trains, bit for bit", la == lb and len(la) == 3,
          "%r vs %r" % (la, lb))
    rs = exp.get("rope_scaling") or {}
    check("the exported config.json carries the override, the model type and its fields",
          exp.get("model_type") == "qwen2" and rs.get("rope_type") == "yarn" and rs.get("factor") == 4.0
          and rs.get("original_max_position_embeddings") == 32 and exp.get("rope_theta") == 20000.0
          and exp.get("use_sliding_window") is True and exp.get("sliding_window") == 20
          and exp.get("max_window_layers") == 1, json.dumps(exp)[:400])
    tensors = set(llama_ref.read_safetensors(os.path.join(outs["override"], "model.safetensors"))[0])
    check("the exported weights keep their HF names (q/k/v biases)",
          "model.layers.1.self_attn.q_proj.bias" in tensors and "model.layers.0.self_attn.v_proj.bias" in tensors,
          str(sorted(tensors)[:6]))
    # LoRA under an override: the adapter plus the base's config as trained, which merge-lora --config keeps
    out = os.path.join(d, "train_lora_override")
    y = os.path.join(d, "lora_override.yaml")
    open(y, "w").write(TRAIN % dict(model=model, tokens=toks, out=out) + "lora: {rank: 2}\n")
    r = run([exe, "train", y] + extra_override)
    merged = os.path.join(d, "merged_override")
    r2 = run([exe, "merge-lora", "--model", model, "--adapter", out, "--out", merged, "--config",
              os.path.join(out, "base_config.json")]) if r.returncode == 0 else r
    try:
        mc = json.load(open(os.path.join(merged, "config.json")))
    except (OSError, ValueError):
        mc = {}
    check("LoRA with model.override writes base_config.json; merge-lora --config keeps the override",
          r2.returncode == 0 and (mc.get("rope_scaling") or {}).get("rope_type") == "yarn"
          and mc.get("rope_theta") == 20000.0, (r.stderr + r2.stderr).strip()[-300:])
    r = run([exe, "train", os.path.join(d, "override.yaml"), "model.override=5"])
    check("error: model.override that is not a mapping",
          r.returncode == 1 and "model.override" in r.stderr and len(r.stderr.strip().splitlines()) == 1,
          r.stderr.strip()[-200:])
    r = run([exe, "train", os.path.join(d, "override.yaml"), "model.override.rope_scaling.rope_type=dynamic",
             "model.override.rope_scaling.factor=2"])
    check("error: model.override with rope type dynamic is refused in one line",
          r.returncode == 1 and "dynamic" in r.stderr and len(r.stderr.strip().splitlines()) == 1,
          r.stderr.strip()[-200:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--longctx", required=True)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    exe = os.path.abspath(args.longctx)
    d = tempfile.mkdtemp(prefix="longctx_families_")
    t0 = time.time()
    try:
        rng = np.random.default_rng(7)
        toks2 = os.path.join(d, "toks2.npy")
        toks1 = os.path.join(d, "toks1.npy")
        np.save(toks2, rng.integers(0, 64, size=(2, 42)).astype(np.int32))  # T = 41: windows 11, 13 < T
        np.save(toks1, rng.integers(0, 64, size=(1, 49)).astype(np.int32))  # T = 48: 3 chunks of 16
        models = {}
        for name, cfg, seed in (("qwen3", QWEN3, 1), ("mistral", MISTRAL, 2), ("qwen2", QWEN2, 3)):
            models[name] = os.path.join(d, name)
            llama_ref.write_random_model(models[name], cfg, seed=seed)
        for name in ("qwen3", "mistral"):
            test_plans(exe, d, name, models[name], toks2, toks1)
        test_lora(exe, d, "qwen3", models["qwen3"], toks1)
        if shutil.which("mpirun"):
            test_cp(exe, d, "qwen3", models["qwen3"], toks2, toks1, ("ulysses", "upipe", "ring", "zigzag", "hybrid"))
            test_cp(exe, d, "mistral", models["mistral"], toks2, toks1, ("ring", "zigzag"))
        else:
            check("mpirun is installed", False)
        test_plan_vs_grad(exe, d, "qwen3", models["qwen3"])
        test_override(exe, d, models["qwen2"])
    finally:
        if args.keep:
            print("kept", d)
        else:
            shutil.rmtree(d, ignore_errors=True)
    print("%.1f s" % (time.time() - t0))
    print("%d passed, %d failed" % (sum(RESULTS), len(RESULTS) - sum(RESULTS)))
    return 0 if all(RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main())
