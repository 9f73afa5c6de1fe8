#!/usr/bin/env python3
"""Times torch.nn.functional.scaled_dot_product_attention at bench_attention_gpu's shapes.

Causal bf16, B = 1, C = NH * HS = 2048, layout (B, H, T, HS); GQA (NKV = NH / 4) through enable_gqa. Each of
torch's fused backends (FLASH_ATTENTION, EFFICIENT_ATTENTION, CUDNN_ATTENTION) is forced in turn with
torch.nn.attention.sdpa_kernel; the fastest fwd+bwd is the row's "torch_backend". Above --all-backends-up-to
only the previous T's fastest runs (the slow ones would eat the time budget). Timing as bench_attention_gpu's:
cudaEvents around each call, warm-up 2, median of 5 (fewer when the budget is short).

FLOPs (causal): fwd = 4*B*NH*T^2*HS/2, bwd = 2.5 x fwd, fwd+bwd = 3.5 x fwd.

  python3 torch_sdpa.py [--T 8192,...] [--head-dims 128,64] [--no-gqa] [--reps 5] [--warmup 2]
                        [--max-seconds 35] [--all-backends-up-to 32768] [--json FILE]
Writes JSON lines {"T", "head_dim", "nh", "nkv", "fwd_ms", "fwdbwd_ms", "tflops_fwd", "tflops_fwdbwd",
"torch_backend", "backends": {name: {...} or {"error": ...}}}. Exit 0, or 2 when no row could be timed.
"""

import argparse
import json
import math
import statistics
import sys
import time
import warnings


def parse_list(s):
    return [int(x) for x in s.split(",") if x]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--T", type=parse_list, default=[8192, 16384, 32768, 65536, 131072])
    ap.add_argument("--head-dims", type=parse_list, default=[128, 64])
    ap.add_argument("--no-gqa", action="store_true")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--max-seconds", type=float, default=35.0)
    ap.add_argument("--all-backends-up-to", type=int, default=32768)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    t0 = time.monotonic()

    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if not torch.cuda.is_available():
        print("torch_sdpa: error: torch sees no CUDA device", file=sys.stderr)
        return 2
    print(
        f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}, "
        f"cuDNN {torch.backends.cudnn.version()}, budget {args.max_seconds:.0f} s "
        f"(import took {time.monotonic() - t0:.1f} s)",
        flush=True,
    )
    print("FLOPs (causal): fwd = 4*B*NH*T^2*HS/2, bwd = 2.5 x fwd, fwd+bwd = 3.5 x fwd")
    # forcing a backend that cannot run warns at length before it raises; the error is reported below
    warnings.filterwarnings("ignore", category=UserWarning)

    all_backends = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION]
    configs = [(hs, 2048 // hs, 2048 // hs) for hs in args.head_dims]
    if not args.no_gqa and args.head_dims:
        hs = args.head_dims[0]
        configs.append((hs, 2048 // hs, 2048 // hs // 4))

    ev0 = torch.cuda.Event(enable_timing=True)
    ev1 = torch.cuda.Event(enable_timing=True)

    def time_ms(fn, reps):
        ms = []
        for r in range(args.warmup + reps):
            ev0.record()
            fn()
            ev1.record()
            ev1.synchronize()
            if r >= args.warmup:
                ms.append(ev0.elapsed_time(ev1))
        return statistics.median(ms)

    out = open(args.json, "w") if args.json else None
    rows = 0
    print(f"{'T':>8} {'HS':>4} {'NH':>4} {'NKV':>4} {'backend':>20} {'fwd_ms':>10} {'fwdbwd_ms':>12} "
          f"{'fwd_TF/s':>10} {'fwdbwd_TF/s':>12}", flush=True)
    # T outside, configs inside: a short budget drops the longest T of every config, not whole configs
    best_prev = {}  # config -> the backend fastest at its previous T
    prev = {}  # config -> (previous T, {backend: seconds it took there})
    for T in args.T:
        for hs, nh, nkv in configs:
            cfg = (hs, nh, nkv)
            prev_T, prev_costs = prev.get(cfg, (0, {}))
            all_of_them = T <= args.all_backends_up_to or cfg not in best_prev
            backends = all_backends if all_of_them else [best_prev[cfg]]
            left = args.max_seconds - (time.monotonic() - t0)
            # the cost grows as T^2: skip a shape that would not fit what is left
            predicted = 0.0
            if prev_T:
                predicted = sum(prev_costs.get(be.name, 0.0) for be in backends) * (T / prev_T) ** 2
            if left <= 0 or predicted > left:
                print(f"{T:>8} {hs:>4} {nh:>4} {nkv:>4}  skipped: time budget ({left:.1f} s left, "
                      f"~{predicted:.1f} s needed)", flush=True)
                continue
            amp = math.sqrt(3.0)  # unit variance, as bench_attention_gpu's inputs
            q = torch.empty(1, nh, T, hs, dtype=torch.bfloat16, device="cuda").uniform_(-amp, amp)
            k = torch.empty(1, nkv, T, hs, dtype=torch.bfloat16, device="cuda").uniform_(-amp, amp)
            v = torch.empty(1, nkv, T, hs, dtype=torch.bfloat16, device="cuda").uniform_(-amp, amp)
            dout = torch.empty(1, nh, T, hs, dtype=torch.bfloat16, device="cuda").uniform_(-amp, amp)
            q.requires_grad_(True)
            k.requires_grad_(True)
            v.requires_grad_(True)
            kw = {"enable_gqa": True} if nkv != nh else {}
            fwd_flops = 4.0 * nh * T * T * hs / 2
            results = {}
            costs = {}
            for be in backends:
                name = be.name
                tb = time.monotonic()
                try:
                    with sdpa_kernel([be]):

                        def fwd():
                            return F.scaled_dot_product_attention(q, k, v, is_causal=True, **kw)

                        def fwdbwd():
                            o = fwd()
                            torch.autograd.grad(o, (q, k, v), dout)

                        # one fwd+bwd: is the backend there, and how many reps fit what is left
                        t1 = time.monotonic()
                        fwdbwd()
                        torch.cuda.synchronize()
                        one = time.monotonic() - t1
                        left_now = args.max_seconds - (time.monotonic() - t0)
                        reps = args.reps
                        while reps > 1 and (args.warmup + reps) * one * 1.3 > left_now:
                            reps -= 1
                        f_ms = time_ms(fwd, reps)
                        fb_ms = time_ms(fwdbwd, reps)
                    results[name] = {
                        "fwd_ms": round(f_ms, 4),
                        "fwdbwd_ms": round(fb_ms, 4),
                        "tflops_fwd": round(fwd_flops / (f_ms * 1e-3) / 1e12, 2),
                        "tflops_fwdbwd": round(3.5 * fwd_flops / (fb_ms * 1e-3) / 1e12, 2),
                        "reps": reps,
                    }
                    r = results[name]
                    print(f"{T:>8} {hs:>4} {nh:>4} {nkv:>4} {name:>20} {f_ms:>10.3f} {fb_ms:>12.3f} "
                          f"{r['tflops_fwd']:>10.1f} {r['tflops_fwdbwd']:>12.1f}", flush=True)
                except (RuntimeError, NotImplementedError, TypeError) as e:
                    msg = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
                    results[name] = {"error": msg}
                    print(f"{T:>8} {hs:>4} {nh:>4} {nkv:>4} {name:>20}  unavailable: {msg}", flush=True)
                    torch.cuda.synchronize()
                costs[name] = time.monotonic() - tb
            del q, k, v, dout
            torch.cuda.empty_cache()
            timed = {n: r for n, r in results.items() if "fwdbwd_ms" in r}
            if not timed:
                print(f"{T:>8} {hs:>4} {nh:>4} {nkv:>4}  no backend ran", flush=True)
                continue
            best = min(timed, key=lambda n: timed[n]["fwdbwd_ms"])
            best_prev[cfg] = getattr(SDPBackend, best)
            prev[cfg] = (T, costs)
            b = timed[best]
            row = {
                "T": T,
                "head_dim": hs,
                "nh": nh,
                "nkv": nkv,
                "fwd_ms": b["fwd_ms"],
                "fwdbwd_ms": b["fwdbwd_ms"],
                "tflops_fwd": b["tflops_fwd"],
                "tflops_fwdbwd": b["tflops_fwdbwd"],
                "torch_backend": best,
                "backends": results,
            }
            rows += 1
            if out:
                out.write(json.dumps(row) + "\n")
                out.flush()
    if out:
        out.close()
    print(f"total {time.monotonic() - t0:.1f} s, {rows} rows", flush=True)
    return 0 if rows else 2


if __name__ == "__main__":
    sys.exit(main())
