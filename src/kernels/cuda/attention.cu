// Flash attention on CUDA (fp32): the CPU kernels' contract (kernels/cpu/attention.h), written plainly
// first (one warp per row, no tiling) so it can be checked on a device before it is made fast.
//
// A warp owns one row: a query row in the forward and dq kernels, a key row in the dk/dv kernel. Its 32
// lanes split the head dimension (lane l holds elements l, l + 32, ..., NC = ceil(HS / 32) <= 8 chunks in
// registers), so row loads are coalesced and a dot product is a per-lane partial sum and a warp butterfly.
// The butterfly leaves the same bits in every lane, so branches on scores are warp-uniform, as are all
// loops (they depend on the row and the key or query only), which the full-mask shuffles need. Every sum
// runs in a fixed order and there are no atomics: the same inputs give the same bits every run.
//
// Scores are natural-log (expf, logf; not the CPU's base-2 packing), so results match the CPU's to
// rounding, not bit for bit.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "core/check.h"
#include "kernels/cuda/common.cuh"  // as_stream, launch_check, warp_sum
#include "kernels/cuda/cuda_kernels.h"

namespace longctx::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 4;  // rows per block; blocks are only a unit of scheduling here
constexpr int kThreads = kWarp * kWarpsPerBlock;
constexpr int kMaxHS = 256;                // NC <= 8 register chunks per lane per row vector
constexpr int64_t kMaxGridX = 2147483647;  // 2^31 - 1; the kernels loop over rows past the grid
constexpr unsigned kFull = 0xffffffffu;

using cpu::AttentionDims;
using cpu::AttentionMask;

// Two warp sums at once (the two shuffle chains overlap); like warp_sum, every lane gets the same bits.
__device__ __forceinline__ void warp_sum2(float& a, float& b) {
#pragma unroll
  for (int o = kWarp / 2; o > 0; o >>= 1) {
    a += __shfl_xor_sync(kFull, a, o);
    b += __shfl_xor_sync(kFull, b, o);
  }
}

// Row r of this warp and the stride to its next row (the grid may be smaller than the row count).
__device__ __forceinline__ int64_t first_row() {
  return int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
}
__device__ __forceinline__ int64_t row_stride() { return int64_t(gridDim.x) * kWarpsPerBlock; }

// Keys [0, end) may be visible to query i (position q_offset + i) under the causal mask.
__device__ __forceinline__ int64_t key_end(const AttentionDims& d, const AttentionMask& m, int64_t i) {
  if (!m.causal) return d.Tk;
  return min(d.Tk, max(int64_t(0), m.q_offset + i + 1));
}

// Queries [begin, Tq) may see key j under the causal mask: j <= q_offset + i <=> i >= j - q_offset.
__device__ __forceinline__ int64_t query_begin(const AttentionDims& d, const AttentionMask& m, int64_t j) {
  if (!m.causal) return 0;
  return min(d.Tq, max(int64_t(0), j - m.q_offset));
}

// The sliding window: keys [begin, ...) may be visible to query i: j > q_offset + i - window.
__device__ __forceinline__ int64_t key_begin(const AttentionDims& d, const AttentionMask& m, int64_t i) {
  if (m.window <= 0) return 0;
  return min(d.Tk, max(int64_t(0), m.q_offset + i - m.window + 1));
}

// Queries [0, end) may see key j under the sliding window: q_offset + i - window < j <=> i < j - q_offset +
// window.
__device__ __forceinline__ int64_t query_end(const AttentionDims& d, const AttentionMask& m, int64_t j) {
  if (m.window <= 0) return d.Tq;
  return min(d.Tq, max(int64_t(0), j - m.q_offset + m.window));
}

// dst[c] = src[c * 32 + lane] for the lane's elements of a row of HS floats; 0 past HS.
template <int NC>
__device__ __forceinline__ void load_row(float (&dst)[NC], const float* src, int64_t HS, int lane) {
#pragma unroll
  for (int c = 0; c < NC; c++) {
    const int e = c * kWarp + lane;
    dst[c] = e < HS ? src[e] : 0.f;
  }
}

template <int NC>
__device__ __forceinline__ void store_row(float* dst, const float (&src)[NC], float mul, int64_t HS,
                                          int lane) {
#pragma unroll
  for (int c = 0; c < NC; c++) {
    const int e = c * kWarp + lane;
    if (e < HS) dst[e] = mul * src[c];
  }
}

// One warp per (b, h, i), rows in lse order r = (b * NH + h) * Tq + i, so neighbouring warps read the
// same keys. Online softmax over the visible keys in increasing j: m the running max, l the sum of
// exp(s - m), acc the sum of exp(s - m) v (both rescaled when m moves).
template <int NC>
__global__ void __launch_bounds__(kThreads)
    attention_forward_kernel(float* out, float* lse, const float* q, const float* k, const float* v,
                             AttentionDims d, AttentionMask m, float scale) {
  const int lane = threadIdx.x % kWarp;
  const int64_t rows = d.B * d.NH * d.Tq, G = d.NH / d.NKV, kstride = d.NKV * d.HS;
  for (int64_t r = first_row(); r < rows; r += row_stride()) {
    const int64_t i = r % d.Tq, bh = r / d.Tq, h = bh % d.NH, b = bh / d.NH;
    const int64_t qo = ((b * d.Tq + i) * d.NH + h) * d.HS;
    float qv[NC], acc[NC], kv[NC];
    load_row(qv, q + qo, d.HS, lane);
#pragma unroll
    for (int c = 0; c < NC; c++) acc[c] = 0.f;
    float mx = -INFINITY, l = 0.f;
    const int64_t jbegin = key_begin(d, m, i), jend = key_end(d, m, i);
    const int32_t qdoc = m.q_doc ? m.q_doc[b * d.Tq + i] : 0;
    // offset of key jbegin of this batch row and kv head
    int64_t ko = ((b * d.Tk + jbegin) * d.NKV + h / G) * d.HS;
    for (int64_t j = jbegin; j < jend; j++, ko += kstride) {
      if (m.q_doc && m.k_doc[b * d.Tk + j] != qdoc) continue;
      load_row(kv, k + ko, d.HS, lane);
      float s = 0.f;
#pragma unroll
      for (int c = 0; c < NC; c++) s += qv[c] * kv[c];
      s = warp_sum(s) * scale;
      if (s > mx) {  // the max moves: what was summed shrinks by exp(m_old - s) (0 when m_old = -inf)
        const float alpha = expf(mx - s);
        l *= alpha;
#pragma unroll
        for (int c = 0; c < NC; c++) acc[c] *= alpha;
        mx = s;
      }
      const float p = expf(s - mx);
      l += p;
      load_row(kv, v + ko, d.HS, lane);
#pragma unroll
      for (int c = 0; c < NC; c++) acc[c] += p * kv[c];
    }
    // A row that saw no key has l = 0 and acc = 0: out = 0, lse = -inf.
    store_row(out + qo, acc, l > 0.f ? 1.f / l : 0.f, d.HS, lane);
    if (lane == 0) lse[r] = l > 0.f ? mx + logf(l) : -INFINITY;
  }
}

// One warp per query row (r as in the forward). D = rowsum(dout * out) goes to the workspace for the dk/dv
// kernel; then for each visible key: p = exp(s - lse), dp = dout . v_j, ds = p (dp - D), dq += scale ds k_j.
// A row with lse = -inf saw no key (p = 0): dq = 0.
template <int NC>
__global__ void __launch_bounds__(kThreads)
    attention_dq_kernel(float* dq, float* D, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, AttentionDims d, AttentionMask m,
                        float scale) {
  const int lane = threadIdx.x % kWarp;
  const int64_t rows = d.B * d.NH * d.Tq, G = d.NH / d.NKV, kstride = d.NKV * d.HS;
  for (int64_t r = first_row(); r < rows; r += row_stride()) {
    const int64_t i = r % d.Tq, bh = r / d.Tq, h = bh % d.NH, b = bh / d.NH;
    const int64_t qo = ((b * d.Tq + i) * d.NH + h) * d.HS;
    float qv[NC], gv[NC], acc[NC], kv[NC], vv[NC];
    load_row(gv, dout + qo, d.HS, lane);
    load_row(acc, out + qo, d.HS, lane);  // acc holds out until it is zeroed
    float Dr = 0.f;
#pragma unroll
    for (int c = 0; c < NC; c++) Dr += gv[c] * acc[c];
    Dr = warp_sum(Dr);
    if (lane == 0) D[r] = Dr;
    load_row(qv, q + qo, d.HS, lane);
#pragma unroll
    for (int c = 0; c < NC; c++) acc[c] = 0.f;
    const float L = lse[r];
    const int64_t jbegin = key_begin(d, m, i), jend = L == -INFINITY ? 0 : key_end(d, m, i);
    const int32_t qdoc = m.q_doc ? m.q_doc[b * d.Tq + i] : 0;
    int64_t ko = ((b * d.Tk + jbegin) * d.NKV + h / G) * d.HS;
    for (int64_t j = jbegin; j < jend; j++, ko += kstride) {
      if (m.q_doc && m.k_doc[b * d.Tk + j] != qdoc) continue;
      load_row(kv, k + ko, d.HS, lane);
      load_row(vv, v + ko, d.HS, lane);
      float s = 0.f, dp = 0.f;
#pragma unroll
      for (int c = 0; c < NC; c++) s += qv[c] * kv[c], dp += gv[c] * vv[c];
      warp_sum2(s, dp);
      const float ds = expf(s * scale - L) * (dp - Dr);
#pragma unroll
      for (int c = 0; c < NC; c++) acc[c] += ds * kv[c];
    }
    store_row(dq + qo, acc, scale, d.HS, lane);
  }
}

// One warp per (b, kv head, key j), rows r = (b * NKV + kvh) * Tk + j. It loops over the queries that see
// key j (increasing i) and, for each, the G query heads of its group: dv_j += p dout_i, dk_j += scale ds q_i.
// Each dk/dv row has one writer, so no atomics are needed.
template <int NC>
__global__ void __launch_bounds__(kThreads)
    attention_dkdv_kernel(float* dk, float* dv, const float* dout, const float* q, const float* k,
                          const float* v, const float* lse, const float* D, AttentionDims d, AttentionMask m,
                          float scale) {
  const int lane = threadIdx.x % kWarp;
  const int64_t rows = d.B * d.NKV * d.Tk, G = d.NH / d.NKV;
  for (int64_t r = first_row(); r < rows; r += row_stride()) {
    const int64_t j = r % d.Tk, bk = r / d.Tk, kvh = bk % d.NKV, b = bk / d.NKV;
    const int64_t ko = ((b * d.Tk + j) * d.NKV + kvh) * d.HS;
    float kv[NC], vv[NC], dka[NC], dva[NC], qv[NC], gv[NC];
    load_row(kv, k + ko, d.HS, lane);
    load_row(vv, v + ko, d.HS, lane);
#pragma unroll
    for (int c = 0; c < NC; c++) dka[c] = 0.f, dva[c] = 0.f;
    const int32_t kdoc = m.q_doc ? m.k_doc[b * d.Tk + j] : 0;
    const int64_t iend = query_end(d, m, j);
    for (int64_t i = query_begin(d, m, j); i < iend; i++) {
      if (m.q_doc && m.q_doc[b * d.Tq + i] != kdoc) continue;
      for (int64_t gg = 0; gg < G; gg++) {
        const int64_t h = kvh * G + gg, li = (b * d.NH + h) * d.Tq + i;
        const float L = lse[li];
        if (L == -INFINITY) continue;  // the row saw no key: p = 0
        const int64_t qo = ((b * d.Tq + i) * d.NH + h) * d.HS;
        load_row(qv, q + qo, d.HS, lane);
        load_row(gv, dout + qo, d.HS, lane);
        float s = 0.f, dp = 0.f;
#pragma unroll
        for (int c = 0; c < NC; c++) s += qv[c] * kv[c], dp += gv[c] * vv[c];
        warp_sum2(s, dp);
        const float p = expf(s * scale - L), ds = p * (dp - D[li]);
#pragma unroll
        for (int c = 0; c < NC; c++) dva[c] += p * gv[c], dka[c] += ds * qv[c];
      }
    }
    store_row(dk + ko, dka, scale, d.HS, lane);
    store_row(dv + ko, dva, 1.f, d.HS, lane);
  }
}

// One warp per (b, h, t) row, r as in the forward: the two parts weighted by their softmax mass.
__global__ void __launch_bounds__(kThreads)
    attention_merge_kernel(float* out, float* lse, const float* part_out, const float* part_lse, int64_t B,
                           int64_t Tq, int64_t NH, int64_t HS) {
  const int lane = threadIdx.x % kWarp;
  const int64_t rows = B * NH * Tq;
  for (int64_t r = first_row(); r < rows; r += row_stride()) {
    const int64_t t = r % Tq, bh = r / Tq, h = bh % NH, b = bh / NH;
    const float x = lse[r], y = part_lse[r], mx = x < y ? y : x;  // std::max, as the CPU merge
    if (mx == -INFINITY) continue;  // neither part sees a key: the row stays as it is
    const float wx = expf(x - mx), wy = expf(y - mx), s = wx + wy;
    const int64_t o = ((b * Tq + t) * NH + h) * HS;
    for (int64_t e = lane; e < HS; e += kWarp) out[o + e] = (out[o + e] * wx + part_out[o + e] * wy) / s;
    __syncwarp();  // every lane has read lse[r] before lane 0 overwrites it
    if (lane == 0) lse[r] = mx + logf(s);
  }
}

// ---------------------------------------------------------------- host side

// Blocks of kWarpsPerBlock warps for one warp per row, within the grid's x limit (the kernels loop over
// the rows past it). rows > 0.
unsigned blocks_for(int64_t rows) {
  return unsigned(std::min<int64_t>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock, kMaxGridX));
}

void check_dims(const char* op, const AttentionDims& d) {
  CHECK(d.HS >= 1 && d.HS <= kMaxHS, "[", op, "] the CUDA kernel takes head sizes 1 .. ", kMaxHS,
        ", got HS = ", d.HS);
  CHECK(d.NKV > 0 && d.NH % d.NKV == 0, "[", op, "] NH = ", d.NH, " must be a multiple of NKV = ", d.NKV);
}

// Calls f(std::integral_constant<int, NC>) with NC = ceil(HS / 32) in 1 .. 8 (HS checked before).
template <class F>
void with_chunks(int64_t HS, F&& f) {
  switch ((HS + kWarp - 1) / kWarp) {
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    case 5: f(std::integral_constant<int, 5>{}); break;
    case 6: f(std::integral_constant<int, 6>{}); break;
    case 7: f(std::integral_constant<int, 7>{}); break;
    default: f(std::integral_constant<int, 8>{}); break;
  }
}

}  // namespace

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       const cpu::AttentionDims& d, const cpu::AttentionMask& m, float scale, void* stream) {
  check_dims("attention_forward", d);
  const int64_t rows = d.B * d.NH * d.Tq;
  if (rows == 0) return;  // Tk == 0 still launches: every row then gets out = 0, lse = -inf
  const cudaStream_t st = as_stream(stream);
  with_chunks(d.HS, [&](auto nc) {
    attention_forward_kernel<decltype(nc)::value>
        <<<blocks_for(rows), kThreads, 0, st>>>(out, lse, q, k, v, d, m, scale);
  });
  launch_check("attention_forward_kernel");
}

// The workspace holds D = rowsum(dout * out), (B, NH, Tq), written by the dq kernel, read by dk/dv.
size_t attention_backward_workspace_floats(const cpu::AttentionDims& d) {
  return size_t(std::max<int64_t>(d.B * d.NH * d.Tq, 1));
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q, const float* k,
                        const float* v, const float* out, const float* lse, float* workspace,
                        const cpu::AttentionDims& d, const cpu::AttentionMask& m, float scale, void* stream) {
  check_dims("attention_backward", d);
  const int64_t qrows = d.B * d.NH * d.Tq, krows = d.B * d.NKV * d.Tk;
  const cudaStream_t st = as_stream(stream);
  with_chunks(d.HS, [&](auto nc) {
    constexpr int NC = decltype(nc)::value;
    // dq first: it writes D, which the dk/dv kernel (after it on the stream) reads. Either side may be
    // empty; the other still runs, so dq = 0 when Tk == 0 and dk = dv = 0 when Tq == 0.
    if (qrows > 0) {
      attention_dq_kernel<NC>
          <<<blocks_for(qrows), kThreads, 0, st>>>(dq, workspace, dout, q, k, v, out, lse, d, m, scale);
      launch_check("attention_dq_kernel");
    }
    if (krows > 0) {
      attention_dkdv_kernel<NC>
          <<<blocks_for(krows), kThreads, 0, st>>>(dk, dv, dout, q, k, v, lse, workspace, d, m, scale);
      launch_check("attention_dkdv_kernel");
    }
  });
}

void attention_merge(float* out, float* lse, const float* part_out, const float* part_lse, int64_t B,
                     int64_t Tq, int64_t NH, int64_t HS, void* stream) {
  const int64_t rows = B * NH * Tq;
  if (rows == 0) return;  // HS == 0 still runs: lse is merged, as on the CPU
  attention_merge_kernel<<<blocks_for(rows), kThreads, 0, as_stream(stream)>>>(out, lse, part_out, part_lse,
                                                                               B, Tq, NH, HS);
  launch_check("attention_merge_kernel");
}

}  // namespace longctx::cuda
