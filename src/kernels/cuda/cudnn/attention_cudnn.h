// Fused attention (SDPA) through cuDNN's graph API (cudnn-frontend headers), bf16 in and out, fp32 softmax
// statistics. Built only when CMake found the frontend headers and libcudnn (cmake/cudnn.cmake); otherwise
// kernels/cuda/cudnn/stub.cpp stands in: cudnn_attention_built() is false, cudnn_attention_versions() says
// why, and every other call throws.
//
// Layout: q/out/dout/dq are (B, Tq, NH, HS) row-major bf16; k/v/dk/dv are (B, Tk, NKV, HS) (GQA when NKV <
// NH: query head h reads K/V head h / (NH / NKV), K/V are never repeated). lse is (B, NH, Tq) fp32, natural
// log: lse = log(sum_j exp(scale * q.k_j)) over the keys the row sees. Causal: query i sees keys j <= Tk - Tq
// + i (diagonal aligned bottom-right; Tq <= Tk; with Tq == Tk the usual top-left causal mask).
//
// Streams are cudaStream_t and buffers device pointers, as `void*` so this header needs no CUDA include. Each
// (device, dims, causal, deterministic, direction) builds its cuDNN graph once (the first call is slow)
// and caches it for the process. Calls are enqueued on `stream`; none synchronises. Pointers must be 16-byte
// aligned (cudaMalloc's are). Every cuDNN or frontend error throws longctx::Error naming the op and the dims.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace longctx::cuda {

bool cudnn_attention_built();
// "cuDNN <runtime version> (headers ..., frontend ...)" for logs; the stub says why it is not built.
std::string cudnn_attention_versions();

struct SdpaDims {
  int64_t B, Tq, Tk, NH, NKV, HS;
};

// Device scratch the call needs, in bytes (0 is possible; then `workspace` may be null). Backward: the larger
// of the deterministic and the non-deterministic graphs' needs, so either call fits (builds both graphs); the
// overload with `deterministic` sizes exactly the one graph it names.
size_t cudnn_attention_workspace_bytes(const SdpaDims& d, bool causal, bool backward);
size_t cudnn_attention_workspace_bytes(const SdpaDims& d, bool causal, bool backward, bool deterministic);

// out = softmax(scale * q k^T [causal mask]) v; lse as above (the backward reads it).
void cudnn_attention_forward(void* out, float* lse, const void* q, const void* k, const void* v,
                             const SdpaDims& d, bool causal, float scale, void* workspace, void* stream);

// dq, dk, dv (overwritten) from dout and the forward's q, k, v, out and lse. deterministic: cuDNN's
// deterministic algorithm (bitwise-reproducible dq; slower).
void cudnn_attention_backward(void* dq, void* dk, void* dv, const void* dout, const void* q, const void* k,
                              const void* v, const void* out, const float* lse, const SdpaDims& d,
                              bool causal, float scale, bool deterministic, void* workspace, void* stream);

}  // namespace longctx::cuda
