#!/usr/bin/python3
"""End-to-end check of `longctx grad` / `longctx init` against the fp64 PyTorch
reference in tests/reference/llama_ref.py (DESIGN.md section 6, item 2).

    /usr/bin/python3 tests/model/test_vs_torch.py --longctx build/bin/longctx [--keep] [-v]

Prints one line per check and a final `N passed, M failed`; exits 1 on any failure.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import traceback

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import llama_ref  # noqa: E402

GRAD_RTOL = 1e-4   # ||g - g_ref|| / ||g_ref|| per tensor
LOSS_RTOL = 1e-5
TIMEOUT = 300

# (name, HF config, seed, batch, T+1, token dtype, sharded, weight dtype)
CASES = [
    ("a_mha_tied", dict(
        architectures=["LlamaForCausalLM"], model_type="llama",
        vocab_size=97, hidden_size=64, intermediate_size=172, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, rms_norm_eps=1e-5,
        rope_theta=10000.0, tie_word_embeddings=True, max_position_embeddings=256,
        torch_dtype="float32"),
     11, 2, 65, np.int64, False, "F32"),
    ("b_gqa_llama3", dict(
        architectures=["LlamaForCausalLM"], model_type="llama",
        vocab_size=211, hidden_size=72, intermediate_size=150, num_hidden_layers=2,
        num_attention_heads=6, num_key_value_heads=2, head_dim=14, rms_norm_eps=3e-6,
        rope_theta=500.0, max_position_embeddings=256, tie_word_embeddings=False,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                          high_freq_factor=4.0, original_max_position_embeddings=48),
        torch_dtype="float32"),
     12, 1, 100, np.int32, False, "F32"),
    ("c_mqa_ropeparams_bf16_sharded", dict(
        architectures=["LlamaForCausalLM"], model_type="llama",
        vocab_size=300, hidden_size=80, intermediate_size=203, num_hidden_layers=2,
        num_attention_heads=5, num_key_value_heads=1, rms_norm_eps=1e-5,
        max_position_embeddings=256, tie_word_embeddings=False,
        rope_parameters=dict(rope_type="default", rope_theta=2000.0),
        torch_dtype="bfloat16"),
     13, 2, 130, np.uint16, True, "BF16"),
]

# The other families and RoPE scalings, held to GRAD_RTOL_NEW: every bias, q/k norm, head_dim != C/NH,
# sliding windows shorter than the sequence, yarn in both config layouts.
NEW_CASES = [
    ("d_qwen2_bias_window_yarn", dict(
        architectures=["Qwen2ForCausalLM"], model_type="qwen2",
        vocab_size=151, hidden_size=64, intermediate_size=120, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=1000.0,
        max_position_embeddings=256, tie_word_embeddings=True,
        use_sliding_window=True, sliding_window=24, max_window_layers=1,
        rope_scaling=dict(type="yarn", factor=4.0, original_max_position_embeddings=64),
        torch_dtype="float32"),
     21, 2, 81, np.int64, False, "F32"),
    ("e_qwen3_qknorm_bias_layer_types_yarn", dict(
        architectures=["Qwen3ForCausalLM"], model_type="qwen3",
        vocab_size=173, hidden_size=48, intermediate_size=100, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, attention_bias=True,
        rms_norm_eps=1e-6, max_position_embeddings=512, tie_word_embeddings=False,
        use_sliding_window=True, sliding_window=20, max_window_layers=28,
        layer_types=["sliding_attention", "full_attention"],
        rope_parameters=dict(rope_type="yarn", rope_theta=5000.0, factor=8.0,
                             original_max_position_embeddings=64, beta_fast=16, beta_slow=2),
        torch_dtype="float32"),
     22, 1, 90, np.int64, False, "F32"),
    ("f_mistral_window_linear", dict(
        architectures=["MistralForCausalLM"], model_type="mistral",
        vocab_size=131, hidden_size=60, intermediate_size=130, num_hidden_layers=2,
        num_attention_heads=6, num_key_value_heads=2, head_dim=12, rms_norm_eps=1e-5,
        rope_theta=10000.0, max_position_embeddings=512, sliding_window=17,
        rope_scaling=dict(rope_type="linear", factor=2.0), torch_dtype="float32"),
     23, 2, 70, np.int32, False, "F32"),
    ("g_llama_biases_yarn_mscale", dict(
        architectures=["LlamaForCausalLM"], model_type="llama",
        vocab_size=111, hidden_size=40, intermediate_size=88, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=1, attention_bias=True, mlp_bias=True,
        rms_norm_eps=1e-5, max_position_embeddings=1024, tie_word_embeddings=False,
        rope_parameters=dict(rope_type="yarn", rope_theta=20000.0, factor=16.0,
                             original_max_position_embeddings=64, mscale=1.0, mscale_all_dim=0.5,
                             truncate=False),
        torch_dtype="float32"),
     24, 2, 66, np.int64, False, "F32"),
]
GRAD_RTOL_NEW = 1e-5

INIT_CONFIG = dict(
    architectures=["LlamaForCausalLM"], model_type="llama",
    vocab_size=257, hidden_size=64, intermediate_size=100, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, rope_theta=10000.0,
    max_position_embeddings=512, tie_word_embeddings=False, initializer_range=0.02,
    torch_dtype="float32")

BAD_OUTPUT_MARKERS = ("Traceback", "terminate called", "Aborted", "core dumped",
                      "Segmentation fault", "what():", "AddressSanitizer")


class Checks:
    def __init__(self, verbose):
        self.passed = 0
        self.failed = 0
        self.verbose = verbose

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        print(f"{'PASS' if ok else 'FAIL'} {name}" + (f": {detail}" if detail else ""), flush=True)
        return ok


def run(cmd, verbose=False):
    if verbose:
        print("  $ " + " ".join(cmd), flush=True)
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(cmd, -9, e.stdout or "", f"timed out after {TIMEOUT}s")
    except OSError as e:
        return subprocess.CompletedProcess(cmd, 127, "", f"cannot run {cmd[0]}: {e}")


def last_json(stdout):
    lines = [ln for ln in stdout.strip().splitlines() if ln.strip()]
    if not lines:
        raise ValueError("no stdout")
    return json.loads(lines[-1])


def describe(p):
    tail = (p.stderr or "").strip().splitlines()[-5:]
    return f"rc={p.returncode} stderr={' | '.join(tail)!r}"


def check_summary(C, tag, summary, expect_tokens):
    ok = isinstance(summary, dict)
    missing = [k for k in ("loss", "tokens", "step_seconds", "peak_bytes") if not ok or k not in summary]
    C.check(f"{tag}: summary has loss/tokens/step_seconds/peak_bytes", not missing, f"missing {missing}" if missing else "")
    if missing:
        return
    pb = summary["peak_bytes"]
    pk = [k for k in ("device", "host", "disk") if not isinstance(pb, dict) or k not in pb]
    C.check(f"{tag}: peak_bytes has device/host/disk", not pk,
            f"missing {pk}" if pk else f"device={pb['device']} host={pb['host']} disk={pb['disk']}")
    if not pk:
        ints = all(isinstance(pb[k], int) and pb[k] >= 0 for k in ("device", "host", "disk"))
        C.check(f"{tag}: peak_bytes are non-negative integers", ints and pb["host"] > 0, json.dumps(pb)[:200])
    C.check(f"{tag}: tokens == {expect_tokens}", summary["tokens"] == expect_tokens, f"got {summary['tokens']}")
    st = summary["step_seconds"]
    C.check(f"{tag}: step_seconds > 0", isinstance(st, (int, float)) and st > 0, f"{st}")


def compare_grads(C, tag, grads_path, ref_grads, ref_loss, loss, rtol=GRAD_RTOL):
    rel_loss = abs(loss - ref_loss) / abs(ref_loss)
    C.check(f"{tag}: loss", rel_loss < LOSS_RTOL, f"longctx {loss:.9f} ref {ref_loss:.9f} rel {rel_loss:.2e}")
    try:
        got, dts, _ = llama_ref.read_safetensors(grads_path)
    except llama_ref.RefError as e:
        C.check(f"{tag}: gradient file readable", False, str(e))
        return
    extra = sorted(set(got) - set(ref_grads))
    missing = sorted(set(ref_grads) - set(got))
    C.check(f"{tag}: gradient names match the reference ({len(ref_grads)} tensors)",
            not extra and not missing, f"extra {extra[:5]} missing {missing[:5]}")
    worst_name, worst, bad = None, -1.0, []
    for name in sorted(set(got) & set(ref_grads)):
        g = np.asarray(got[name], dtype=np.float64)
        r = ref_grads[name].numpy()
        if g.shape != r.shape:
            bad.append(f"{name} shape {list(g.shape)} vs {list(r.shape)}")
            continue
        den = np.linalg.norm(r)
        rel = np.linalg.norm(g - r) / den if den > 0 else np.linalg.norm(g)
        if not np.isfinite(rel):
            rel = float("inf")
        if rel > worst:
            worst_name, worst = name, rel
        if not rel < rtol:
            bad.append(f"{name} rel {rel:.2e} (|ref| {den:.3e}, |got| {np.linalg.norm(g):.3e})")
    C.check(f"{tag}: every gradient within {rtol:g}", not bad and worst_name is not None,
            f"worst {worst_name} {worst:.2e}" + (f"; bad: {'; '.join(bad[:8])}" if bad else ""))
    dtset = sorted(set(dts.values()))
    C.check(f"{tag}: gradient dtypes float", all(d in ("F32", "F64") for d in dtset), f"{dtset}")


def grad_case(C, args, tmp, case, rtol=GRAD_RTOL):
    name, config, seed, B, T1, tdtype, sharded, wdtype = case
    d = os.path.join(tmp, name)
    llama_ref.write_random_model(d, config, seed=seed, sharded=sharded, dtype=wdtype)
    rng = np.random.default_rng(seed)
    toks = rng.integers(0, config["vocab_size"], size=(B, T1)).astype(tdtype)
    if B == 1:
        toks = toks[0]  # exercise the (T+1,) form
    tpath = os.path.join(tmp, f"{name}_tokens.npy")
    np.save(tpath, toks)

    cfg, params, dtypes = llama_ref.load_model(d)
    C.check(f"{name}: reference reads weights as {wdtype}", set(dtypes.values()) == {wdtype}, f"{sorted(set(dtypes.values()))}")
    if cfg["rope_type"] == "llama3":
        inv = llama_ref.rope_inv_freq(cfg)
        wl = 2 * math.pi / llama_ref.rope_inv_freq(dict(cfg, rope_type="default"))
        L = cfg["rope_original_max_position_embeddings"]
        hi = int((wl < L / cfg["rope_high_freq_factor"]).sum())
        lo = int((wl > L / cfg["rope_low_freq_factor"]).sum())
        C.check(f"{name}: llama3 config exercises all three frequency bands",
                hi > 0 and lo > 0 and hi + lo < len(wl), f"high {hi} medium {len(wl) - hi - lo} low {lo}; inv_freq {inv.tolist()}")
    if cfg["rope_type"] == "yarn":
        lo, hi = llama_ref.yarn_ramp(cfg)
        idx = np.arange(cfg["head_dim"] // 2)
        interp, kept = int((idx >= hi).sum()), int((idx <= lo).sum())
        C.check(f"{name}: yarn config exercises kept, ramped and interpolated frequencies",
                interp > 0 and kept > 0 and interp + kept < len(idx),
                f"kept {kept} ramped {len(idx) - interp - kept} interpolated {interp}; "
                f"attention factor {llama_ref.rope_attention_scale(cfg):.6f}")
    if any(cfg["windows"]):
        # mistral windows every block; qwen2/3 only some, so both kinds of block are checked
        mixed = cfg["model_type"] != "mistral"
        C.check(f"{name}: sliding windows {cfg['windows']} are shorter than the sequence of {T1 - 1}",
                all(w < T1 - 1 for w in cfg["windows"]) and (0 in cfg["windows"]) == mixed)
    inputs, labels = llama_ref.load_tokens(tpath, cfg["vocab_size"])
    ref_loss, ref_grads = llama_ref.loss_and_grads(cfg, params, inputs, labels)
    C.check(f"{name}: reference loss is sane", math.isfinite(ref_loss) and 0 < ref_loss < 3 * math.log(cfg["vocab_size"]),
            f"{ref_loss:.6f} (ln V = {math.log(cfg['vocab_size']):.4f})")

    cli_grad_part(C, args, tmp, name, d, tpath, B * (T1 - 1), ref_grads, ref_loss, rtol)
    return d, tpath


def cli_grad_part(C, args, tmp, name, d, tpath, expect_tokens, ref_grads, ref_loss, rtol=GRAD_RTOL):
    gpath = os.path.join(tmp, f"{name}_grads.safetensors")
    p = run([args.longctx, "grad", "--model", d, "--tokens", tpath, "--out", gpath], args.verbose)
    if not C.check(f"{name}: longctx grad exits 0", p.returncode == 0, describe(p)):
        return
    try:
        summary = last_json(p.stdout)
    except (ValueError, json.JSONDecodeError) as e:
        C.check(f"{name}: last stdout line is JSON", False, f"{e}: {p.stdout.strip().splitlines()[-1:]!r}")
        return
    check_summary(C, name, summary, expect_tokens)
    if "loss" in summary and os.path.exists(gpath):
        compare_grads(C, name, gpath, ref_grads, ref_loss, float(summary["loss"]), rtol)
    else:
        C.check(f"{name}: gradient file written", os.path.exists(gpath), gpath)


def ref_cli_check(C, tmp, d, tpath):
    """The reference's own CLI agrees with the in-process call and writes F64."""
    out = os.path.join(tmp, "ref_cli_grads.safetensors")
    p = run([sys.executable, os.path.join(HERE, "..", "reference", "llama_ref.py"),
             "--model", d, "--tokens", tpath, "--out", out])
    ok = p.returncode == 0
    detail = describe(p)
    if ok:
        cfg, params, _ = llama_ref.load_model(d)
        inputs, labels = llama_ref.load_tokens(tpath, cfg["vocab_size"])
        loss, grads = llama_ref.loss_and_grads(cfg, params, inputs, labels)
        got, dts, meta = llama_ref.read_safetensors(out)
        ok = (abs(last_json(p.stdout)["loss"] - loss) == 0 and set(got) == set(grads)
              and all(np.array_equal(got[n], grads[n].numpy()) for n in got) and set(dts.values()) == {"F64"})
        detail = f"loss {loss:.12f}, {len(got)} F64 tensors"
    C.check("reference CLI writes exact F64 gradients", ok, detail)


def init_checks(C, args, tmp):
    cpath = os.path.join(tmp, "init_config.json")
    with open(cpath, "w") as f:
        json.dump(INIT_CONFIG, f, indent=2)
    dirs = {}
    for tag, seed in (("s3", 3), ("s3b", 3), ("s4", 4)):
        out = os.path.join(tmp, f"init_{tag}")
        p = run([args.longctx, "init", "--config", cpath, "--out", out, "--seed", str(seed)], args.verbose)
        C.check(f"init --seed {seed} ({tag}) exits 0", p.returncode == 0, describe(p))
        dirs[tag] = out
    w = {t: os.path.join(dd, "model.safetensors") for t, dd in dirs.items()}
    if not all(os.path.exists(x) for x in w.values()):
        C.check("init writes model.safetensors", False, str([x for x in w.values() if not os.path.exists(x)]))
        return
    b = {t: open(x, "rb").read() for t, x in w.items()}
    C.check("init: same seed gives identical bytes", b["s3"] == b["s3b"], f"{len(b['s3'])} vs {len(b['s3b'])} bytes")
    C.check("init: different seed gives different weights", b["s3"] != b["s4"])
    try:
        cfg, params, dtypes = llama_ref.load_model(dirs["s3"])
    except llama_ref.RefError as e:
        C.check("init: reference loads the directory", False, str(e))
        return
    C.check("init: reference loads the directory", True, f"{len(params)} tensors, dtypes {sorted(set(dtypes.values()))}")
    want = llama_ref.normalize_config(INIT_CONFIG)
    diff = {k: (cfg.get(k), v) for k, v in want.items() if cfg.get(k) != v}
    C.check("init: config.json round-trips the model fields", not diff, f"{diff}")
    stds = {n: float(t.std()) for n, t in params.items() if t.dim() == 2}
    ir = INIT_CONFIG["initializer_range"]
    C.check("init: matrices ~ N(0, initializer_range)", all(0.5 * ir < s < 2 * ir for s in stds.values()),
            f"std range [{min(stds.values()):.4f}, {max(stds.values()):.4f}]")
    rng = np.random.default_rng(5)
    toks = rng.integers(0, cfg["vocab_size"], size=(2, 97)).astype(np.int64)
    tpath = os.path.join(tmp, "init_tokens.npy")
    np.save(tpath, toks)
    inputs, labels = llama_ref.load_tokens(tpath, cfg["vocab_size"])
    loss, grads = llama_ref.loss_and_grads(cfg, params, inputs, labels)
    lnv = math.log(cfg["vocab_size"])
    C.check("init: reference loss near ln(V)", abs(loss - lnv) < 0.5, f"loss {loss:.4f} ln V {lnv:.4f}")
    gpath = os.path.join(tmp, "init_grads.safetensors")
    p = run([args.longctx, "grad", "--model", dirs["s3"], "--tokens", tpath, "--out", gpath], args.verbose)
    if C.check("init model: longctx grad exits 0", p.returncode == 0, describe(p)):
        try:
            s = last_json(p.stdout)
            compare_grads(C, "init model", gpath, grads, loss, float(s["loss"]))
        except (ValueError, KeyError, json.JSONDecodeError) as e:
            C.check("init model: summary parse", False, str(e))


def error_case(C, args, title, cmd, fname, words):
    p = run([args.longctx] + cmd, args.verbose)
    err = (p.stderr or "").strip()
    lines = err.splitlines()
    problems = []
    if p.returncode not in (1, 2):
        problems.append(f"rc {p.returncode} (want 1 or 2{', killed by signal' if p.returncode < 0 else ''})")
    if len(lines) != 1:
        problems.append(f"{len(lines)} stderr lines")
    if fname not in err:
        problems.append(f"no {fname!r} in stderr")
    if not any(wd.lower() in err.lower() for wd in words):
        problems.append(f"none of {words} in stderr")
    bad = [m for m in BAD_OUTPUT_MARKERS if m in err or m in (p.stdout or "")]
    if bad:
        problems.append(f"crash markers {bad}")
    C.check(f"error: {title}", not problems, ("; ".join(problems) + " -- " if problems else "") + f"stderr={err[:300]!r}")


def error_checks(C, args, tmp):
    base = CASES[1]  # q_proj (84, 72): transposing it changes the shape
    good = os.path.join(tmp, "err_model")
    llama_ref.write_random_model(good, base[1], seed=1)
    V = base[1]["vocab_size"]
    good_toks = os.path.join(tmp, "err_tokens.npy")
    np.save(good_toks, np.random.default_rng(0).integers(0, V, size=(1, 20)).astype(np.int64))
    out = os.path.join(tmp, "err_grads.safetensors")
    missing_words = ["exist", "not found", "no such", "missing", "cannot", "can't", "could not", "open", "not a directory"]

    nodir = os.path.join(tmp, "no_such_model_dir")
    error_case(C, args, "missing model directory",
               ["grad", "--model", nodir, "--tokens", good_toks, "--out", out], "no_such_model_dir", missing_words)

    badcfg = os.path.join(tmp, "bad_json_model")
    shutil.copytree(good, badcfg)
    with open(os.path.join(badcfg, "config.json"), "w") as f:
        f.write('{"vocab_size": 211, "hidden_size": 72,, "num_hidden_layers": \n')
    error_case(C, args, "malformed config.json",
               ["grad", "--model", badcfg, "--tokens", good_toks, "--out", out], "config.json",
               ["json", "parse", "malformed", "syntax", "invalid", "unexpected"])

    error_case(C, args, "missing tokens file",
               ["grad", "--model", good, "--tokens", os.path.join(tmp, "absent_tokens.npy"), "--out", out],
               "absent_tokens.npy", missing_words)

    t3 = os.path.join(tmp, "tokens_3d.npy")
    np.save(t3, np.zeros((2, 3, 10), dtype=np.int64))
    error_case(C, args, "tokens with 3 dims",
               ["grad", "--model", good, "--tokens", t3, "--out", out], "tokens_3d.npy",
               ["dim", "shape", "rank", "1-d", "2-d", "1d", "2d"])

    toov = os.path.join(tmp, "tokens_oov.npy")
    arr = np.random.default_rng(1).integers(0, V, size=(2, 20)).astype(np.int32)
    arr[1, 7] = V
    np.save(toov, arr)
    error_case(C, args, "token id >= vocab_size",
               ["grad", "--model", good, "--tokens", toov, "--out", out], "tokens_oov.npy",
               ["vocab", "range", "token", "id", "bound"])

    wshape = os.path.join(tmp, "wrong_shape_model")
    os.makedirs(wshape)
    shutil.copy(os.path.join(good, "config.json"), wshape)
    tensors, _, _ = llama_ref.read_safetensors(os.path.join(good, "model.safetensors"))
    tensors = {n: np.array(a) for n, a in tensors.items()}
    qn = "model.layers.1.self_attn.q_proj.weight"
    tensors[qn] = np.ascontiguousarray(tensors[qn].T)
    llama_ref.write_safetensors(os.path.join(wshape, "model.safetensors"), tensors, "F32")
    error_case(C, args, "weights tensor of the wrong shape (q_proj transposed)",
               ["grad", "--model", wshape, "--tokens", good_toks, "--out", out], "model.safetensors",
               ["shape", "expected", "mismatch", "q_proj"])

    icfg = os.path.join(tmp, "init_no_hidden.json")
    c = dict(INIT_CONFIG)
    del c["hidden_size"]
    with open(icfg, "w") as f:
        json.dump(c, f)
    error_case(C, args, "init with config missing hidden_size",
               ["init", "--config", icfg, "--out", os.path.join(tmp, "init_bad_out"), "--seed", "3"],
               "init_no_hidden.json", ["hidden_size"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--longctx", required=True, help="path to the longctx binary")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    args.longctx = os.path.abspath(args.longctx)
    torch.set_num_threads(min(4, os.cpu_count() or 1))
    C = Checks(args.verbose)
    tmp = tempfile.mkdtemp(prefix="longctx_vs_torch_")
    try:
        C.check("reference self-test (naive loops, finite differences, llama3 values)",
                llama_ref.self_test(verbose=False) == 0)
        C.check("longctx binary exists", os.access(args.longctx, os.X_OK), args.longctx)
        first = None
        for case, rtol in [(c, GRAD_RTOL) for c in CASES] + [(c, GRAD_RTOL_NEW) for c in NEW_CASES]:
            try:
                r = grad_case(C, args, tmp, case, rtol)
                first = first or r
            except Exception:
                C.check(f"{case[0]}: no exception in the test", False, traceback.format_exc().strip().splitlines()[-1])
                traceback.print_exc()
        if first:
            ref_cli_check(C, tmp, *first)
        for fn in (init_checks, error_checks):
            try:
                fn(C, args, tmp)
            except Exception:
                C.check(f"{fn.__name__}: no exception in the test", False, traceback.format_exc().strip().splitlines()[-1])
                traceback.print_exc()
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{C.passed} passed, {C.failed} failed")
    return 1 if C.failed else 0


if __name__ == "__main__":
    sys.exit(main())
