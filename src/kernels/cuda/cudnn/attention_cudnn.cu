// Fused attention through cuDNN's SDPA graphs (cudnn-frontend, header-only, PyPI nvidia-cudnn-frontend). Kept
// in its own file: the frontend headers compile slowly. See attention_cudnn.h for layouts and conventions.
//
// What the frontend headers (1.32) say, and what this file relies on:
// - Stats (our lse) is (B, H, Tq, 1) fp32 in natural log: the frontend documents set_stats_use_log2() as
//   converting "from cuDNN's natural-log convention to base-2"; we leave it off, so no conversion is needed.
// - GQA: K/V tensors carry NKV heads; cuDNN requires NH % NKV == 0 and reduces dK/dV over each group itself.
// - Causal: set_diagonal_band_right_bound(0) with DiagonalAlignment_t::TOP_LEFT (Tq == Tk) or ::BOTTOM_RIGHT
//   (Tq < Tk: query i sees keys j <= Tk - Tq + i); cuDNN refuses bottom-right with Tq > Tk.
// - No explicit mask tensor (no bias, no padding mask): cuDNN has been reported to give NaNs in dQ on Hopper
//   when T % 128 == 64 with an explicit mask tensor. The frontend itself adds an internal padding mask for
//   s_kv % 128 != 0 on cuDNN <= 9.15 (a workaround of its own); bench_attention_gpu checks T = 1088.
// - Strides: our (B, T, H, HS) row-major buffers are cuDNN's (B, H, T, HS) dims with strides
//   {T*H*HS, HS, H*HS, 1}.
#include <cuda_runtime.h>
#include <cudnn.h>
#include <cudnn_frontend.h>

#include <algorithm>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "core/check.h"
#include "kernels/cuda/cudnn/attention_cudnn.h"

namespace longctx::cuda {

namespace fe = cudnn_frontend;

namespace {

// Tensor uids in the variant packs.
enum : int64_t { kQ = 1, kK, kV, kO, kStats, kdO, kdQ, kdK, kdV, kScale };

std::string dims_str(const SdpaDims& d, bool causal) {
  return str_cat("B=", d.B, " Tq=", d.Tq, " Tk=", d.Tk, " NH=", d.NH, " NKV=", d.NKV, " HS=", d.HS,
                 causal ? " causal" : " full");
}

void validate(const char* op, const SdpaDims& d, bool causal) {
  if (d.B <= 0 || d.Tq <= 0 || d.Tk <= 0 || d.NH <= 0 || d.NKV <= 0 || d.HS <= 0)
    FAIL("cuDNN ", op, ": dims must be positive (", dims_str(d, causal), ")");
  if (d.NH % d.NKV != 0) FAIL("cuDNN ", op, ": NH must be a multiple of NKV (", dims_str(d, causal), ")");
  if (d.HS % 8 != 0) FAIL("cuDNN ", op, ": HS must be a multiple of 8 (", dims_str(d, causal), ")");
  if (causal && d.Tq > d.Tk)
    FAIL("cuDNN ", op, ": causal attention needs Tq <= Tk (bottom-right aligned; ", dims_str(d, causal), ")");
}

void check_ptr(const char* op, const char* name, const void* p, const SdpaDims& d, bool causal) {
  if (p == nullptr) FAIL("cuDNN ", op, ": ", name, " is null (", dims_str(d, causal), ")");
  if (reinterpret_cast<uintptr_t>(p) % 16 != 0)
    FAIL("cuDNN ", op, ": ", name, " is not 16-byte aligned (", dims_str(d, causal), ")");
}

void cudnn_ok(cudnnStatus_t s, const char* what) {
  if (s != CUDNN_STATUS_SUCCESS) FAIL("cuDNN ", what, " failed: ", cudnnGetErrorString(s));
}

void cuda_ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) FAIL("CUDA ", what, " failed: ", cudaGetErrorString(e));
}

void fe_ok(fe::error_t e, const char* op, const char* step, const SdpaDims& d, bool causal) {
  if (!e.is_good())
    FAIL("cuDNN ", op, ": ", step, " failed (frontend code ", static_cast<int>(e.get_code()),
         "): ", e.get_message(), " (", dims_str(d, causal), ")");
}

// (B, T, H, HS) row-major seen as cuDNN's (B, H, T, HS)
std::vector<int64_t> bthd_dims(int64_t B, int64_t T, int64_t H, int64_t HS) { return {B, H, T, HS}; }
std::vector<int64_t> bthd_strides(int64_t T, int64_t H, int64_t HS) { return {T * H * HS, HS, H * HS, 1}; }

struct Key {
  int device;
  int64_t B, Tq, Tk, NH, NKV, HS;
  bool causal, deterministic, backward;
  bool operator<(const Key& o) const {
    return std::tie(device, B, Tq, Tk, NH, NKV, HS, causal, deterministic, backward) <
           std::tie(o.device, o.B, o.Tq, o.Tk, o.NH, o.NKV, o.HS, o.causal, o.deterministic, o.backward);
  }
};

struct Built {
  std::shared_ptr<fe::graph::Graph> graph;
  int64_t workspace = 0;
};

// Process-lifetime state, never destroyed: cuDNN handles and graphs must not be torn down after the CUDA
// context at exit. One mutex covers building and executing (Graph::execute keeps mutable caches).
struct State {
  std::mutex mu;
  std::map<int, cudnnHandle_t> handles;
  std::map<Key, Built> graphs;
};
State& state() {
  static State* s = new State;
  return *s;
}

cudnnHandle_t handle_for(State& st, int device) {
  auto it = st.handles.find(device);
  if (it != st.handles.end()) return it->second;
  cudnnHandle_t h = nullptr;
  cudnn_ok(cudnnCreate(&h), "cudnnCreate");
  st.handles[device] = h;
  return h;
}

std::shared_ptr<fe::graph::Graph> new_graph() {
  auto g = std::make_shared<fe::graph::Graph>();
  g->set_io_data_type(fe::DataType_t::BFLOAT16)
      .set_intermediate_data_type(fe::DataType_t::FLOAT)
      .set_compute_data_type(fe::DataType_t::FLOAT);
  return g;
}

// The softmax scale is a pass-by-value tensor (a host float in the variant pack), so one graph serves any
// scale.
std::shared_ptr<fe::graph::Tensor_attributes> scale_tensor(fe::graph::Graph& g) {
  return g.tensor(fe::graph::Tensor_attributes()
                      .set_name("attn_scale")
                      .set_uid(kScale)
                      .set_dim({1, 1, 1, 1})
                      .set_stride({1, 1, 1, 1})
                      .set_is_pass_by_value(true)
                      .set_data_type(fe::DataType_t::FLOAT));
}

std::shared_ptr<fe::graph::Tensor_attributes> bf16_tensor(fe::graph::Graph& g, const char* name, int64_t uid,
                                                          int64_t B, int64_t T, int64_t H, int64_t HS) {
  return g.tensor(fe::graph::Tensor_attributes()
                      .set_name(name)
                      .set_uid(uid)
                      .set_dim(bthd_dims(B, T, H, HS))
                      .set_stride(bthd_strides(T, H, HS))
                      .set_data_type(fe::DataType_t::BFLOAT16));
}

void build_forward(fe::graph::Graph& g, const SdpaDims& d, bool causal) {
  auto Q = bf16_tensor(g, "Q", kQ, d.B, d.Tq, d.NH, d.HS);
  auto K = bf16_tensor(g, "K", kK, d.B, d.Tk, d.NKV, d.HS);
  auto V = bf16_tensor(g, "V", kV, d.B, d.Tk, d.NKV, d.HS);
  auto opts = fe::graph::SDPA_attributes()
                  .set_name("longctx_sdpa_fwd")
                  .set_generate_stats(true)
                  .set_attn_scale(scale_tensor(g));
  if (causal) {
    opts.set_diagonal_alignment(d.Tq == d.Tk ? fe::DiagonalAlignment_t::TOP_LEFT
                                             : fe::DiagonalAlignment_t::BOTTOM_RIGHT)
        .set_diagonal_band_right_bound(0);
  }
  auto [O, Stats] = g.sdpa(Q, K, V, opts);
  O->set_output(true)
      .set_uid(kO)
      .set_dim(bthd_dims(d.B, d.Tq, d.NH, d.HS))
      .set_stride(bthd_strides(d.Tq, d.NH, d.HS))
      .set_data_type(fe::DataType_t::BFLOAT16);
  Stats->set_output(true)
      .set_uid(kStats)
      .set_dim({d.B, d.NH, d.Tq, 1})
      .set_stride({d.NH * d.Tq, d.Tq, 1, 1})
      .set_data_type(fe::DataType_t::FLOAT);
}

void build_backward(fe::graph::Graph& g, const SdpaDims& d, bool causal, bool deterministic) {
  auto Q = bf16_tensor(g, "Q", kQ, d.B, d.Tq, d.NH, d.HS);
  auto K = bf16_tensor(g, "K", kK, d.B, d.Tk, d.NKV, d.HS);
  auto V = bf16_tensor(g, "V", kV, d.B, d.Tk, d.NKV, d.HS);
  auto O = bf16_tensor(g, "O", kO, d.B, d.Tq, d.NH, d.HS);
  auto dO = bf16_tensor(g, "dO", kdO, d.B, d.Tq, d.NH, d.HS);
  auto Stats = g.tensor(fe::graph::Tensor_attributes()
                            .set_name("Stats")
                            .set_uid(kStats)
                            .set_dim({d.B, d.NH, d.Tq, 1})
                            .set_stride({d.NH * d.Tq, d.Tq, 1, 1})
                            .set_data_type(fe::DataType_t::FLOAT));
  auto opts = fe::graph::SDPA_backward_attributes()
                  .set_name("longctx_sdpa_bwd")
                  .set_attn_scale(scale_tensor(g))
                  .set_deterministic_algorithm(deterministic);
  if (causal) {
    opts.set_diagonal_alignment(d.Tq == d.Tk ? fe::DiagonalAlignment_t::TOP_LEFT
                                             : fe::DiagonalAlignment_t::BOTTOM_RIGHT)
        .set_diagonal_band_right_bound(0);
  }
  auto [dQ, dK, dV] = g.sdpa_backward(Q, K, V, O, dO, Stats, opts);
  dQ->set_output(true)
      .set_uid(kdQ)
      .set_dim(bthd_dims(d.B, d.Tq, d.NH, d.HS))
      .set_stride(bthd_strides(d.Tq, d.NH, d.HS))
      .set_data_type(fe::DataType_t::BFLOAT16);
  dK->set_output(true)
      .set_uid(kdK)
      .set_dim(bthd_dims(d.B, d.Tk, d.NKV, d.HS))
      .set_stride(bthd_strides(d.Tk, d.NKV, d.HS))
      .set_data_type(fe::DataType_t::BFLOAT16);
  dV->set_output(true)
      .set_uid(kdV)
      .set_dim(bthd_dims(d.B, d.Tk, d.NKV, d.HS))
      .set_stride(bthd_strides(d.Tk, d.NKV, d.HS))
      .set_data_type(fe::DataType_t::BFLOAT16);
}

// The cached graph for these arguments, built on first use; st.mu must be held.
Built& get_graph(State& st, cudnnHandle_t handle, int device, const SdpaDims& d, bool causal,
                 bool deterministic, bool backward) {
  Key key{device, d.B, d.Tq, d.Tk, d.NH, d.NKV, d.HS, causal, backward && deterministic, backward};
  auto it = st.graphs.find(key);
  if (it != st.graphs.end()) return it->second;

  const char* op = backward ? "SDPA backward" : "SDPA forward";
  Built b;
  try {
    b.graph = new_graph();
    if (backward)
      build_backward(*b.graph, d, causal, deterministic);
    else
      build_forward(*b.graph, d, causal);
    fe_ok(b.graph->validate(), op, "validate", d, causal);
    fe_ok(b.graph->build_operation_graph(handle), op, "build_operation_graph", d, causal);
    fe_ok(b.graph->create_execution_plans({fe::HeurMode_t::A}), op, "create_execution_plans", d, causal);
    fe_ok(b.graph->check_support(), op, "check_support", d, causal);
    fe_ok(b.graph->build_plans(fe::BuildPlanPolicy_t::HEURISTICS_CHOICE), op, "build_plans", d, causal);
    fe_ok(b.graph->get_workspace_size(b.workspace), op, "get_workspace_size", d, causal);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    // the frontend and its shim throw std::runtime_error on some paths (e.g. a missing libcudnn piece)
    FAIL("cuDNN ", op, ": graph build threw: ", e.what(), " (", dims_str(d, causal), ")");
  }
  if (b.workspace < 0) FAIL("cuDNN ", op, ": negative workspace size (", dims_str(d, causal), ")");
  return st.graphs.emplace(key, std::move(b)).first->second;
}

int current_device() {
  int dev = 0;
  cuda_ok(cudaGetDevice(&dev), "cudaGetDevice");
  return dev;
}

size_t workspace_of(const SdpaDims& d, bool causal, bool backward, bool deterministic) {
  const char* op = backward ? "SDPA backward" : "SDPA forward";
  validate(op, d, causal);
  State& st = state();
  std::lock_guard<std::mutex> lock(st.mu);
  int dev = current_device();
  cudnnHandle_t h = handle_for(st, dev);
  return size_t(get_graph(st, h, dev, d, causal, deterministic, backward).workspace);
}

void execute(const char* op, Built& b, cudnnHandle_t h, std::unordered_map<int64_t, void*>& pack,
             void* workspace, void* stream, const SdpaDims& d, bool causal) {
  if (b.workspace > 0 && workspace == nullptr)
    FAIL("cuDNN ", op, ": needs ", b.workspace, " bytes of workspace but got none (", dims_str(d, causal),
         ")");
  if (workspace != nullptr && reinterpret_cast<uintptr_t>(workspace) % 16 != 0)
    FAIL("cuDNN ", op, ": workspace is not 16-byte aligned (", dims_str(d, causal), ")");
  cudnn_ok(cudnnSetStream(h, static_cast<cudaStream_t>(stream)), "cudnnSetStream");
  try {
    fe_ok(b.graph->execute(h, pack, workspace), op, "execute", d, causal);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    FAIL("cuDNN ", op, ": execute threw: ", e.what(), " (", dims_str(d, causal), ")");
  }
}

}  // namespace

bool cudnn_attention_built() { return true; }

std::string cudnn_attention_versions() {
  size_t v = cudnnGetVersion();  // major * 10000 + minor * 100 + patch since cuDNN 9
  return str_cat("cuDNN ", v / 10000, ".", (v / 100) % 100, ".", v % 100, " (headers ", CUDNN_MAJOR, ".",
                 CUDNN_MINOR, ".", CUDNN_PATCHLEVEL, ", frontend ", CUDNN_FRONTEND_MAJOR_VERSION, ".",
                 CUDNN_FRONTEND_MINOR_VERSION, ".", CUDNN_FRONTEND_PATCH_VERSION, ")");
}

size_t cudnn_attention_workspace_bytes(const SdpaDims& d, bool causal, bool backward, bool deterministic) {
  return workspace_of(d, causal, backward, deterministic);
}

size_t cudnn_attention_workspace_bytes(const SdpaDims& d, bool causal, bool backward) {
  size_t bytes = workspace_of(d, causal, backward, false);
  if (backward) {
    // A deterministic graph that cuDNN cannot build here throws when it is asked for, not now.
    try {
      bytes = std::max(bytes, workspace_of(d, causal, true, true));
    } catch (const Error&) {
    }
  }
  return bytes;
}

void cudnn_attention_forward(void* out, float* lse, const void* q, const void* k, const void* v,
                             const SdpaDims& d, bool causal, float scale, void* workspace, void* stream) {
  const char* op = "SDPA forward";
  validate(op, d, causal);
  check_ptr(op, "out", out, d, causal);
  check_ptr(op, "lse", lse, d, causal);
  check_ptr(op, "q", q, d, causal);
  check_ptr(op, "k", k, d, causal);
  check_ptr(op, "v", v, d, causal);
  State& st = state();
  std::lock_guard<std::mutex> lock(st.mu);
  int dev = current_device();
  cudnnHandle_t h = handle_for(st, dev);
  Built& b = get_graph(st, h, dev, d, causal, false, false);
  std::unordered_map<int64_t, void*> pack = {{kQ, const_cast<void*>(q)},
                                             {kK, const_cast<void*>(k)},
                                             {kV, const_cast<void*>(v)},
                                             {kO, out},
                                             {kStats, lse},
                                             {kScale, &scale}};
  execute(op, b, h, pack, workspace, stream, d, causal);
}

void cudnn_attention_backward(void* dq, void* dk, void* dv, const void* dout, const void* q, const void* k,
                              const void* v, const void* out, const float* lse, const SdpaDims& d,
                              bool causal, float scale, bool deterministic, void* workspace, void* stream) {
  const char* op = "SDPA backward";
  validate(op, d, causal);
  check_ptr(op, "dq", dq, d, causal);
  check_ptr(op, "dk", dk, d, causal);
  check_ptr(op, "dv", dv, d, causal);
  check_ptr(op, "dout", dout, d, causal);
  check_ptr(op, "q", q, d, causal);
  check_ptr(op, "k", k, d, causal);
  check_ptr(op, "v", v, d, causal);
  check_ptr(op, "out", out, d, causal);
  check_ptr(op, "lse", lse, d, causal);
  State& st = state();
  std::lock_guard<std::mutex> lock(st.mu);
  int dev = current_device();
  cudnnHandle_t h = handle_for(st, dev);
  Built& b = get_graph(st, h, dev, d, causal, deterministic, true);
  std::unordered_map<int64_t, void*> pack = {{kQ, const_cast<void*>(q)},
                                             {kK, const_cast<void*>(k)},
                                             {kV, const_cast<void*>(v)},
                                             {kO, const_cast<void*>(out)},
                                             {kdO, const_cast<void*>(dout)},
                                             {kStats, const_cast<float*>(lse)},
                                             {kdQ, dq},
                                             {kdK, dk},
                                             {kdV, dv},
                                             {kScale, &scale}};
  execute(op, b, h, pack, workspace, stream, d, causal);
}

}  // namespace longctx::cuda
