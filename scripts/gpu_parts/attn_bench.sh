#!/usr/bin/env bash
# gpu_check.sh part `attn-bench`: cuDNN attention (bench_attention_gpu: a correctness check against a host
# reference, then causal bf16 timings over T) beside torch's scaled_dot_product_attention at the same shapes
# (bench/attention_gpu/torch_sdpa.py), about 90 s on an H200. Prints a side-by-side table and writes
# $OUT/attention.json: a list, one entry per shape,
#   {"T", "head_dim", "nkv", "longctx_tflops", "torch_tflops", "torch_backend", ...}
# (fwd+bwd TFLOP/s, causal count: 3.5 x 4*B*NH*T^2*HS/2). Exits 1 when bench_attention_gpu failed (its
# correctness check, or an error), 0 otherwise; a torch side that fails is reported, not fatal.
#
# Environment: BUILD_DIR (build-gpu), PYTHON (python3), OUT (.), ATTN_LONGCTX_SECONDS (40) and
# ATTN_TORCH_SECONDS (35): the two sides' time budgets; ATTN_ARGS: more arguments for both (e.g. "--T 8192").
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
BUILD_DIR=${BUILD_DIR:-build-gpu}
PY=${PYTHON:-python3}
OUT_DIR=${OUT:-.}
LC_S=${ATTN_LONGCTX_SECONDS:-40}
TORCH_S=${ATTN_TORCH_SECONDS:-35}
read -r -a EXTRA <<<"${ATTN_ARGS:-}"
BIN="$BUILD_DIR/bin/bench_attention_gpu"
mkdir -p "$OUT_DIR"
TMP=$(mktemp -d /tmp/attn-bench.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

note() {
  echo "note: $*"
  [ -n "${LCX_NOTE_FILE:-}" ] && echo "$*" >>"$LCX_NOTE_FILE"
  return 0
}

# cuDNN loads its engine libraries (and nvrtc) by name: every PyPI nvidia library folder goes on the binary's
# library path, as gpu_check.sh does (harmless when that is already done); torch finds its own
nv_libs=$("$PY" - <<'EOF' 2>/dev/null
import glob, importlib.util, os
spec = importlib.util.find_spec("nvidia")
dirs = []
for root in (spec.submodule_search_locations or []) if spec else []:
    for d in sorted(glob.glob(os.path.join(root, "*", "lib"))):
        if os.path.isdir(d):
            dirs.append(d)
print(":".join(dirs))
EOF
)
LC_LD_PATH="${nv_libs}${nv_libs:+${LD_LIBRARY_PATH:+:}}${LD_LIBRARY_PATH:-}"

echo "== bench_attention_gpu (budget ${LC_S}s)"
lc_rc=0
if [ -x "$BIN" ]; then
  # its budget counts from its start, the correctness check included; the extra 60 s only stop a hang
  LD_LIBRARY_PATH="$LC_LD_PATH" timeout -k 10 $((LC_S + 60)) \
    "$BIN" --max-seconds "$LC_S" --json "$TMP/longctx.jsonl" "${EXTRA[@]}"
  lc_rc=$?
  case $lc_rc in
    0) ;;
    1) note "bench_attention_gpu: correctness check FAILED" ;;
    124 | 137) note "bench_attention_gpu: timed out" ;;
    *) note "bench_attention_gpu: failed (rc=$lc_rc)" ;;
  esac
else
  note "$BIN missing (built only with cuDNN attention: LONGCTX_HAVE_CUDNN ON)"
  lc_rc=3
fi

echo
echo "== torch scaled_dot_product_attention (budget ${TORCH_S}s)"
PYTHONUNBUFFERED=1 timeout -k 10 $((TORCH_S + 60)) "$PY" bench/attention_gpu/torch_sdpa.py \
  --max-seconds "$TORCH_S" --json "$TMP/torch.jsonl" "${EXTRA[@]}"
t_rc=$?
[ $t_rc -eq 0 ] || note "torch_sdpa.py: failed (rc=$t_rc)"

echo
"$PY" - "$TMP/longctx.jsonl" "$TMP/torch.jsonl" "$OUT_DIR/attention.json" <<'EOF'
import json, os, sys


def load(path):
    rows = {}
    if os.path.exists(path):
        for line in open(path):
            line = line.strip()
            if line:
                r = json.loads(line)
                rows[(r["head_dim"], r["nkv"], r["T"])] = r
    return rows


lc, th = load(sys.argv[1]), load(sys.argv[2])
merged = []
for key in sorted(set(lc) | set(th), key=lambda k: (-k[0], -k[1], k[2])):
    a, b = lc.get(key, {}), th.get(key, {})
    hs, nkv, T = key
    merged.append({
        "T": T,
        "head_dim": hs,
        "nh": a.get("nh", b.get("nh")),
        "nkv": nkv,
        "longctx_tflops": a.get("tflops_fwdbwd"),
        "torch_tflops": b.get("tflops_fwdbwd"),
        "torch_backend": b.get("torch_backend"),
        "longctx_fwd_ms": a.get("fwd_ms"),
        "longctx_fwdbwd_ms": a.get("fwdbwd_ms"),
        "torch_fwd_ms": b.get("fwd_ms"),
        "torch_fwdbwd_ms": b.get("fwdbwd_ms"),
        "torch_backends": b.get("backends"),
    })
with open(sys.argv[3], "w") as f:
    json.dump(merged, f, indent=1)



def fmt(x, width, prec=None):
    if x is None:
        return f"{'-':>{width}}"
    return f"{x:>{width}.{prec}f}" if prec is not None else f"{x:>{width}}"


print("causal bf16 attention, B=1, C=2048: fwd+bwd TFLOP/s (3.5 x 4*B*NH*T^2*HS/2 per fwd+bwd)")
print(f"{'T':>8} {'HS':>4} {'NH':>4} {'NKV':>4} {'longctx':>9} {'torch':>9} {'ratio':>7}"
      f"  {'torch backend':<20} {'longctx ms':>11} {'torch ms':>10}")
for m in merged:
    ratio = m["longctx_tflops"] / m["torch_tflops"] if m["longctx_tflops"] and m["torch_tflops"] else None
    print(f"{m['T']:>8} {m['head_dim']:>4} {fmt(m['nh'], 4)} {m['nkv']:>4} {fmt(m['longctx_tflops'], 9, 1)}"
          f" {fmt(m['torch_tflops'], 9, 1)} {fmt(ratio, 7, 2)}  {m['torch_backend'] or '-':<20}"
          f" {fmt(m['longctx_fwdbwd_ms'], 11, 3)} {fmt(m['torch_fwdbwd_ms'], 10, 3)}")
print(f"wrote {sys.argv[3]} ({len(merged)} shapes)")
EOF
merge_rc=$?
[ $merge_rc -eq 0 ] || note "merging the results failed"

[ $lc_rc -eq 0 ] || exit 1
exit 0
