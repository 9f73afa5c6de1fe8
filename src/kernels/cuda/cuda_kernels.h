// CUDA kernels (launchers). Raw device pointers and sizes, as the CPU kernels
// take them (src/kernels/cpu/cpu_kernels.h), plus the stream they run on
// (`void*` is a cudaStream_t, so this header needs no CUDA include; null is the
// default stream). Shapes were validated by the op layer before these run.
// Every launcher checks its launch (grid limits, the last CUDA error) and
// throws with the kernel's name; none synchronises unless it returns a host
// value. When the CUDA backend is not built, kernels/cuda/stub.cpp defines
// each of these to throw.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/cpu/attention.h"  // AttentionDims, AttentionMask (the mask's doc pointers are device pointers here)

namespace longctx::cuda {

// out (N, C) = wte[tok[n]]; an id outside [0, V) gives a zero row (the op layer refuses such ids first)
void embedding_forward(float* out, const int32_t* tok, const float* wte, int64_t N, int64_t C, int64_t V,
                       void* stream);
// dwte (V, C) += dout rows scattered by tok; deterministic (fixed order per column)
void embedding_backward(float* dwte, const float* dout, const int32_t* tok, int64_t N, int64_t C, int64_t V,
                        void* stream);

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int64_t N, int64_t C,
                     float eps, void* stream);
// dinp = (or += when accumulate); dw += (dw may be null). Deterministic.
void rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                      const float* rstd, int64_t N, int64_t C, bool accumulate, void* stream);

// out (N, OC) = (or +=) inp (N, IC) @ w (OC, IC)^T, through cuBLASLt: fp32 math (TF32 off), or with bf16
// set on bf16 tensor cores (operands rounded to bf16, fp32 accumulation and storage)
void matmul_forward(float* out, const float* inp, const float* w, int64_t N, int64_t IC, int64_t OC,
                    bool accumulate, bool bf16, void* stream);
// dinp (N, IC) = (or +=) dout @ w; dw (OC, IC) += dout^T @ inp. Either may be null.
void matmul_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w, int64_t N,
                     int64_t IC, int64_t OC, bool accumulate, bool bf16, void* stream);

// x (N, H, HS) rotated by the table row pos[n]; cos/sin (P, HS/2). sign +1 forward, -1 backward. out may
// alias inp.
void rope_apply(float* out, const float* inp, const int32_t* pos, const float* cos, const float* sin,
                int64_t N, int64_t H, int64_t HS, float sign, void* stream);

void swiglu_forward(float* out, const float* gate, const float* up, int64_t n, void* stream);
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                     int64_t n, void* stream);

// Fused tiled LM head + cross-entropy (see ops/lm_head_loss.h). logits_tile: (tile, V) device scratch;
// row_loss: (tile + 1) doubles of device scratch (the row losses, then the running total). Returns the loss
// (one synchronisation at the end: the value comes to the host).
double lm_head_loss(float* dhidden, float* dw, const float* hidden, const float* w, const int32_t* targets,
                    int64_t N, int64_t C, int64_t V, double scale, int64_t tile, float* logits_tile,
                    double* row_loss, bool bf16, void* stream);

void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, float lr, float b1, float b2,
                  float eps, float wd, int64_t step, void* stream);

void add(float* out, const float* a, const float* b, int64_t n, void* stream);
void scale(float* x, float s, int64_t n, void* stream);
void axpy(float* y, float a, const float* x, int64_t n, void* stream);  // y += a * x
void fill(float* x, float value, int64_t n, void* stream);
// dst row i (dpitch apart) += src row i (spitch apart), `rows` rows of `width` floats (copy_rows)
void add_rows(float* dst, int64_t dpitch, const float* src, int64_t spitch, int64_t width, int64_t rows,
              void* stream);
// y (N, C) += b (C) on every row; db (C) += the sum of dy's (N, C) rows (in double, deterministic)
void bias_add(float* y, const float* b, int64_t N, int64_t C, void* stream);
void bias_grad(float* db, const float* dy, int64_t N, int64_t C, void* stream);
// fp32 <-> bf16 (round to nearest even); dst/src bf16 buffers are `void*` (2 bytes an element)
void to_bf16(void* dst, const float* src, int64_t n, void* stream);
void from_bf16(float* dst, const void* src, int64_t n, void* stream);
// sum of squares in double, in a fixed order (deterministic); synchronises.
double sum_squares(const float* x, int64_t n, void* stream);

// Flash attention (fp32), the CPU kernels' contract (kernels/cpu/attention.h): out (B, Tq, NH, HS),
// lse (B, NH, Tq); a query that sees no key gets out = 0 and lse = -inf. The mask's doc arrays are device
// pointers. Deterministic: no atomics in the backward.
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       const cpu::AttentionDims& d, const cpu::AttentionMask& m, float scale, void* stream);
// workspace: attention_backward_workspace_floats(d) floats of device memory.
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, float* workspace,
                        const cpu::AttentionDims& d, const cpu::AttentionMask& m, float scale, void* stream);
size_t attention_backward_workspace_floats(const cpu::AttentionDims& d);
// out, lse (B, Tq, NH, HS), (B, NH, Tq) := the merge with part_out, part_lse (see ops/attention.h)
void attention_merge(float* out, float* lse, const float* part_out, const float* part_lse, int64_t B,
                     int64_t Tq, int64_t NH, int64_t HS, void* stream);

}  // namespace longctx::cuda
