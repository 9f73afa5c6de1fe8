// CPU kernels (fp32, OpenMP). Raw pointers and sizes: shapes were validated
// by the op layer (src/ops) before these are called.
#pragma once
#include <cstdint>

namespace longctx::cpu {

// out (N, C) = wte[tok[n]]
void embedding_forward(float* out, const int32_t* tok, const float* wte, int64_t N, int64_t C);
// dwte (V, C) += dout rows scattered by tok
void embedding_backward(float* dwte, const float* dout, const int32_t* tok, int64_t N, int64_t C);

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* w, int64_t N, int64_t C,
                     float eps);
void rmsnorm_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w,
                      const float* rstd, int64_t N, int64_t C, bool accumulate);

// out (N, OC) = inp (N, IC) @ w (OC, IC)^T
void matmul_forward(float* out, const float* inp, const float* w, int64_t N, int64_t IC, int64_t OC,
                    bool accumulate = false);
void matmul_backward(float* dinp, float* dw, const float* dout, const float* inp, const float* w, int64_t N,
                     int64_t IC, int64_t OC, bool accumulate);

// x (N, H, HS) rotated in place by pos; cos/sin (P, HS/2). sign = +1 forward, -1 backward.
void rope_apply(float* out, const float* inp, const int32_t* pos, const float* cos, const float* sin,
                int64_t N, int64_t H, int64_t HS, float sign);

void swiglu_forward(float* out, const float* gate, const float* up, int64_t n);
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate, const float* up,
                     int64_t n);

// Fused LM head + cross-entropy over rows [0, N) in tiles; see ops/lm_head_loss.h.
double lm_head_loss(float* dhidden, float* dw, const float* hidden, const float* w, const int32_t* targets,
                    int64_t N, int64_t C, int64_t V, double scale, int64_t tile, float* logits_tile,
                    double* row_loss);  // row_loss: (tile) scratch

void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, float lr, float b1, float b2,
                  float eps, float wd, int64_t step);

void add(float* out, const float* a, const float* b, int64_t n);
double sum_squares(const float* x, int64_t n);
void scale(float* x, float s, int64_t n);
// y (N, C) += b (C) on every row; db (C) += sum of dy's rows (double, per-thread partials in a fixed order)
void bias_add(float* y, const float* b, int64_t N, int64_t C);
void bias_grad(float* db, const float* dy, int64_t N, int64_t C);

}  // namespace longctx::cpu
