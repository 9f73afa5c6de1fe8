#!/usr/bin/python3
"""Self-test of llama_ref.py: a second, naive reading of the model (token by token, head by head, in numpy
fp64) and its rope scalings, finite differences and gradcheck of the vectorised reference, on configs of
every family (llama, llama with biases, qwen2 with a window and yarn, qwen3 with q/k norms and yarn,
mistral with windows). Run through `llama_ref.py --self-test` or llama_ref.self_test().
"""
import math

import numpy as np
import torch

from llama_ref import (IGNORE_INDEX, bf16_bits_to_f32, f32_to_bf16_bits, forward_loss, loss_and_grads,
                       normalize_config, random_params, rope_attention_scale, rope_inv_freq, yarn_ramp)


def naive_inv_freq(cfg):
    """Per-frequency scalar version of the rope scaling rules (a second reading of HF's code)."""
    hs, out = cfg["head_dim"], []
    for i in range(hs // 2):
        f = cfg["rope_theta"] ** (-(2.0 * i) / hs)
        if cfg["rope_type"] == "linear":
            f /= cfg["rope_factor"]
        elif cfg["rope_type"] == "llama3":
            L = cfg["rope_original_max_position_embeddings"]
            lo, hi, fac = cfg["rope_low_freq_factor"], cfg["rope_high_freq_factor"], cfg["rope_factor"]
            wl = 2 * math.pi / f
            if wl < L / hi:
                pass
            elif wl > L / lo:
                f = f / fac
            else:
                s = (L / wl - lo) / (hi - lo)
                f = (1 - s) * f / fac + s * f
        elif cfg["rope_type"] == "yarn":
            low, high = yarn_ramp(cfg)
            ramp = min(max((i - low) / (high - low), 0.0), 1.0)
            f = (f / cfg["rope_factor"]) * ramp + f * (1 - ramp)
        out.append(f)
    return out


def naive_loss(cfg, params, inputs, labels):
    """Token-by-token, head-by-head numpy fp64 loss: an independent check of forward_loss."""
    P = {n: t.detach().numpy().astype(np.float64) for n, t in params.items()}
    B, T = inputs.shape
    NH, NKV, HS = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps, half = cfg["rms_norm_eps"], HS // 2
    inv = naive_inv_freq(cfg)
    msc = rope_attention_scale(cfg)

    def norm(v, w):
        return v / math.sqrt(float(np.dot(v, v)) / v.size + eps) * w

    def rot(vec, t):
        o = vec.copy()
        for j in range(half):
            c, s = msc * math.cos(t * inv[j]), msc * math.sin(t * inv[j])
            a, b = vec[j], vec[j + half]
            o[j], o[j + half] = a * c - b * s, b * c + a * s
        return o

    def lin(name, v):
        y = P[name + ".weight"] @ v
        return y + P[name + ".bias"] if name + ".bias" in P else y

    def head(vec, hh, which, p):
        part = vec[hh * HS:(hh + 1) * HS]
        if cfg["qk_norm"]:
            part = norm(part, P[p + f"self_attn.{which}_norm.weight"])
        return part

    total, count = 0.0, 0
    for b in range(B):
        xs = [P["model.embed_tokens.weight"][int(inputs[b, t])].copy() for t in range(T)]
        for i in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{i}."
            W = cfg["windows"][i]
            hs = [norm(x, P[p + "input_layernorm.weight"]) for x in xs]
            qs = [lin(p + "self_attn.q_proj", h) for h in hs]
            ks = [lin(p + "self_attn.k_proj", h) for h in hs]
            vs = [lin(p + "self_attn.v_proj", h) for h in hs]
            new = []
            for t in range(T):
                heads = []
                for hh in range(NH):
                    kv = hh // (NH // NKV)
                    qv = rot(head(qs[t], hh, "q", p), t)
                    seen = [u for u in range(t + 1) if not W or u > t - W]
                    sc = []
                    for u in seen:
                        kvec = rot(head(ks[u], kv, "k", p), u)
                        sc.append(float(np.dot(qv, kvec)) / math.sqrt(HS))
                    m = max(sc)
                    e = [math.exp(z - m) for z in sc]
                    z = sum(e)
                    o = sum((e[n] / z) * vs[u][kv * HS:(kv + 1) * HS] for n, u in enumerate(seen))
                    heads.append(o)
                new.append(xs[t] + lin(p + "self_attn.o_proj", np.concatenate(heads)))
            xs = new
            out = []
            for x in xs:
                h = norm(x, P[p + "post_attention_layernorm.weight"])
                gt = lin(p + "mlp.gate_proj", h)
                up = lin(p + "mlp.up_proj", h)
                act = gt / (1.0 + np.exp(-gt)) * up
                out.append(x + lin(p + "mlp.down_proj", act))
            xs = out
        head_w = P["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else P["lm_head.weight"]
        for t in range(T):
            lab = int(labels[b, t])
            if lab == IGNORE_INDEX:
                continue
            lg = head_w @ norm(xs[t], P["model.norm.weight"])
            m = lg.max()
            total += (m + math.log(np.exp(lg - m).sum())) - lg[lab]
            count += 1
    return total / count


SELF_TEST_CONFIGS = [
    dict(vocab_size=23, hidden_size=12, intermediate_size=19, num_hidden_layers=2,
         num_attention_heads=3, tie_word_embeddings=True, rms_norm_eps=1e-5),
    dict(vocab_size=29, hidden_size=16, intermediate_size=21, num_hidden_layers=2,
         num_attention_heads=4, num_key_value_heads=2, head_dim=6, rope_theta=500.0,
         rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                           high_freq_factor=4.0, original_max_position_embeddings=16)),
    dict(vocab_size=31, hidden_size=12, intermediate_size=13, num_hidden_layers=1,
         num_attention_heads=2, num_key_value_heads=1,
         rope_parameters=dict(rope_type="linear", factor=2.0, rope_theta=100.0)),
    # qwen2: q/k/v biases, a sliding window on layer 1 only, yarn (transformers 4.x layout)
    dict(model_type="qwen2", vocab_size=27, hidden_size=16, intermediate_size=18, num_hidden_layers=2,
         num_attention_heads=4, num_key_value_heads=2, use_sliding_window=True, sliding_window=4,
         max_window_layers=1, rope_theta=300.0,
         rope_scaling=dict(type="yarn", factor=4.0, original_max_position_embeddings=8)),
    # qwen3: q/k norms, all four attention biases, head_dim != hidden / heads, yarn with its own
    # attention_factor and betas (5.x layout)
    dict(model_type="qwen3", vocab_size=25, hidden_size=12, intermediate_size=14, num_hidden_layers=2,
         num_attention_heads=2, num_key_value_heads=1, head_dim=8, attention_bias=True,
         rope_parameters=dict(rope_type="yarn", rope_theta=200.0, factor=3.0, original_max_position_embeddings=6,
                              attention_factor=1.3, beta_fast=8.0, beta_slow=2.0, truncate=False)),
    # mistral: sliding window on every layer; llama with both bias flags
    dict(model_type="mistral", vocab_size=23, hidden_size=12, intermediate_size=15, num_hidden_layers=2,
         num_attention_heads=3, num_key_value_heads=1, sliding_window=3, tie_word_embeddings=True),
    dict(model_type="llama", vocab_size=21, hidden_size=8, intermediate_size=10, num_hidden_layers=1,
         num_attention_heads=2, attention_bias=True, mlp_bias=True),
]


def self_test(verbose=True):
    """Returns number of failures."""
    fails = 0

    def report(ok, msg):
        nonlocal fails
        fails += 0 if ok else 1
        if verbose or not ok:
            print(("ok   " if ok else "FAIL ") + msg)

    # llama3 with a hand-worked value: theta 10000, HS 4 -> inv_freq [1, 0.01];
    # L=32, lo=1, hi=4: wavelen 2*pi < 8 kept; 628.3 > 32 divided by 8.
    c = normalize_config(dict(vocab_size=2, hidden_size=4, intermediate_size=2, num_hidden_layers=1,
                              num_attention_heads=1, rope_scaling=dict(type="llama3", factor=8,
                              low_freq_factor=1, high_freq_factor=4, original_max_position_embeddings=32)))
    got = rope_inv_freq(c).tolist()
    report(abs(got[0] - 1.0) < 1e-15 and abs(got[1] - 0.01 / 8) < 1e-15, f"llama3 hand values {got}")
    # medium band: theta 10000 HS 8 -> inv_freq[1] = 0.1, wavelen 62.8; L=128 lo 1 hi 4 -> 32 < 62.8 < 128
    c = normalize_config(dict(vocab_size=2, hidden_size=8, intermediate_size=2, num_hidden_layers=1,
                              num_attention_heads=1, rope_scaling=dict(rope_type="llama3", factor=8,
                              low_freq_factor=1, high_freq_factor=4, original_max_position_embeddings=128)))
    s = (128 / (2 * math.pi / 0.1) - 1) / 3
    want = (1 - s) * 0.1 / 8 + s * 0.1
    got = rope_inv_freq(c)[1].item()
    report(abs(got - want) < 1e-15, f"llama3 medium band {got} vs {want}")

    for ci, raw in enumerate(SELF_TEST_CONFIGS):
        cfg = normalize_config(raw)
        inv_a = rope_inv_freq(cfg).tolist()
        inv_b = naive_inv_freq(cfg)
        report(max(abs(a - b) / b for a, b in zip(inv_a, inv_b)) < 1e-14, f"config {ci}: inv_freq vectorised == scalar")
        params = {n: t.to(torch.float64) for n, t in random_params(cfg, seed=10 + ci).items()}
        g = torch.Generator().manual_seed(ci)
        B, T = 2, 9
        toks = torch.randint(0, cfg["vocab_size"], (B, T + 1), generator=g)
        inputs, labels = toks[:, :-1], toks[:, 1:].clone()
        labels[1, 2] = IGNORE_INDEX
        la = forward_loss(cfg, params, inputs, labels).item()
        lb = naive_loss(cfg, params, inputs, labels)
        report(abs(la - lb) < 1e-12 * max(1.0, abs(lb)), f"config {ci}: loss {la:.15f} vs naive {lb:.15f}")
        loss, grads = loss_and_grads(cfg, params, inputs, labels)
        # directional central differences per tensor, two random directions each
        worst = 0.0
        for name in params:
            for _ in range(2):
                d = torch.randn(params[name].shape, generator=g, dtype=torch.float64)
                d *= params[name].pow(2).mean().sqrt()  # step relative to the tensor's scale

                def central(h):
                    pp = dict(params); pp[name] = params[name] + h * d
                    pm = dict(params); pm[name] = params[name] - h * d
                    return (forward_loss(cfg, pp, inputs, labels).item()
                            - forward_loss(cfg, pm, inputs, labels).item()) / (2 * h)
                fd = (4 * central(5e-5) - central(1e-4)) / 3  # Richardson: O(h^4)
                an = float((grads[name] * d).sum())
                err = abs(fd - an) / max(abs(an), 1e-4)
                worst = max(worst, err)
        report(worst < 1e-6, f"config {ci}: finite differences, worst relative error {worst:.2e}")
        # gradcheck on a whole small tensor set with the naive-loss cross-check already done
        name = "model.norm.weight"
        def f(w):
            pp = dict(params); pp[name] = w
            return forward_loss(cfg, pp, inputs, labels)
        ok = torch.autograd.gradcheck(f, (params[name].clone().requires_grad_(True),), eps=1e-6, atol=1e-8, rtol=1e-6)
        report(ok, f"config {ci}: torch.autograd.gradcheck on {name}")

    # bf16 round trip and safetensors io
    x = np.array([1.0, 1.00390625, 1.005859375, -3.14159, 1e-20, 65504.0], dtype=np.float32)
    bits = f32_to_bf16_bits(x)
    back = bf16_bits_to_f32(bits)
    ref = torch.from_numpy(x).to(torch.bfloat16).to(torch.float32).numpy()
    report(np.array_equal(back, ref), f"bf16 rounding matches torch: {back.tolist()}")
    return fails
