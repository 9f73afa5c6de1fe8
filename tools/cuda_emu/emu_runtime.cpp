// Fiber scheduler for emulated launches, the CUDA runtime calls the kernels' launchers make, and a
// cuBLASLt that computes what cuBLASLt's documented semantics say (column-major layouts, transa/transb).
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <ucontext.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <set>
#include <vector>

#include "stub/emu_device.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define EMU_ASAN 1
#else
#define EMU_ASAN 0
#endif

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

namespace emu {
int64_t cap_grid_for = int64_t(65535) * 8, cap_grid_rows = int64_t(1) << 30;
int policy = 0;
int errors = 0;
long launches = 0;

namespace {
constexpr size_t kStack = 256 << 10;
struct Barrier {
  int expected = 0, arrived = 0;
  std::vector<int> waiters;
};
struct Fiber {
  ucontext_t ctx;
  uint3 tid;
  bool done = false;
  void* fake_stack = nullptr;
};
ucontext_t sched_ctx;
std::vector<Fiber> fibers;
std::vector<char*> stacks;
Barrier block_bar;
std::vector<Barrier> warp_bars;
std::vector<uint64_t> slots;
std::vector<int> slot_lm;
int cur = -1, nthreads = 0, exited = 0;
bool sync_after_exit = false;
std::set<std::pair<uint64_t, int>> runnable;
uint64_t fifo = 0;
std::vector<uint64_t> rank_of;
const std::function<void()>* body = nullptr;
std::set<void*> touched;
size_t shared_bytes = 0;
const char* kname = "";
cudaError_t last_error = cudaSuccess;
const void* sched_stack_bottom = nullptr;
size_t sched_stack_size = 0;

void report(const char* what) {
  errors++;
  if (errors < 30)
    std::printf("  EMU ERROR in %s block (%u,%u) thread %d: %s\n", kname, blockIdx.x, blockIdx.y,
                cur >= 0 ? int(fibers[cur].tid.x) : -1, what);
}

void make_runnable(int f) { runnable.insert({policy == 0 ? ++fifo : rank_of[f], f}); }

// Fiber -> scheduler.
void to_sched(bool exiting) {
#if EMU_ASAN
  Fiber& f = fibers[cur];
  __sanitizer_start_switch_fiber(exiting ? nullptr : &f.fake_stack, sched_stack_bottom, sched_stack_size);
#endif
  if (!exiting) {
    swapcontext(&fibers[cur].ctx, &sched_ctx);
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(fibers[cur].fake_stack, nullptr, nullptr);
#endif
  }
}

void arrive(Barrier& b) {
  if (++b.arrived >= b.expected) {
    b.arrived = 0;
    for (int w : b.waiters) make_runnable(w);
    b.waiters.clear();
    make_runnable(cur);
  } else {
    b.waiters.push_back(cur);
  }
  to_sched(false);
}

void trampoline() {
#if EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &sched_stack_bottom, &sched_stack_size);
#endif
  (*body)();
  const int me = cur;
  fibers[me].done = true;
  exited++;
  // An exited thread no longer counts at __syncthreads (as on sm_70+); a waiting barrier may complete now.
  block_bar.expected--;
  if (block_bar.arrived > 0) {
    report("thread exited while others wait at __syncthreads");
    if (block_bar.arrived >= block_bar.expected) {
      block_bar.arrived = 0;
      for (int w : block_bar.waiters) make_runnable(w);
      block_bar.waiters.clear();
    }
  }
  to_sched(true);
  // returning resumes uc_link = sched_ctx
}

void run_block(unsigned bx, unsigned by) {
  blockIdx = uint3{bx, by, 0};
  const int n = nthreads;
  fibers.assign(size_t(n), Fiber{});
  while (stacks.size() < size_t(n)) stacks.push_back(static_cast<char*>(std::malloc(kStack)));
  block_bar = Barrier{};
  block_bar.expected = n;
  warp_bars.assign(size_t((n + 31) / 32), Barrier{});
  for (int w = 0; w < (n + 31) / 32; w++) warp_bars[size_t(w)].expected = std::min(32, n - w * 32);
  slots.assign(size_t(n), 0x7ff4dead7ff4deadull);
  slot_lm.assign(size_t(n), -1);
  touched.clear();
  shared_bytes = 0;
  exited = 0;
  sync_after_exit = false;
  runnable.clear();
  fifo = 0;
  for (int i = 0; i < n; i++) {
    Fiber& f = fibers[size_t(i)];
    f.tid = uint3{unsigned(i) % blockDim.x, unsigned(i) / blockDim.x % blockDim.y, 0};
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = stacks[size_t(i)];
    f.ctx.uc_stack.ss_size = kStack;
    f.ctx.uc_link = &sched_ctx;
    makecontext(&f.ctx, trampoline, 0);
    make_runnable(i);
  }
  while (!runnable.empty()) {
    const int f = runnable.begin()->second;
    runnable.erase(runnable.begin());
    cur = f;
    threadIdx = fibers[size_t(f)].tid;
#if EMU_ASAN
    void* fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, stacks[size_t(f)], kStack);
#endif
    swapcontext(&sched_ctx, &fibers[size_t(f)].ctx);
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
  }
  cur = -1;
  int stuck = 0;
  for (auto& f : fibers) stuck += !f.done;
  if (stuck) {
    char msg[200];
    std::snprintf(msg, sizeof msg, "DEADLOCK: %d threads never finished (%d at __syncthreads)", stuck,
                  block_bar.arrived);
    report(msg);
  }
}
}  // namespace

void launch_impl(dim3 grid, dim3 block, size_t smem, const std::function<void()>& f, const char* name) {
  launches++;
  kname = name;
  const uint64_t nt = uint64_t(block.x) * block.y * block.z;
  if (grid.x < 1 || grid.x > 2147483647u || grid.y < 1 || grid.y > 65535 || grid.z < 1 || grid.z > 65535 ||
      nt < 1 || nt > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64 || smem > 48 * 1024) {
    std::printf("  EMU: invalid launch configuration for %s: grid (%u,%u,%u) block (%u,%u,%u)\n", name,
                grid.x, grid.y, grid.z, block.x, block.y, block.z);
    last_error = cudaErrorInvalidConfiguration;
    return;
  }
  if (block.z != 1 || grid.z != 1) {
    report("3-D launches are not emulated");
    return;
  }
  gridDim = grid;
  blockDim = block;
  nthreads = int(nt);
  body = &f;
  rank_of.assign(size_t(nt), 0);
  std::mt19937 rng(unsigned(policy * 7919 + launches));
  if (policy == 1)
    for (int i = 0; i < int(nt); i++) rank_of[size_t(i)] = uint64_t(i);
  else if (policy == 2)
    for (int i = 0; i < int(nt); i++) rank_of[size_t(i)] = uint64_t(nt - 1 - i);
  else if (policy >= 3) {  // random warp order, random lane order inside a warp
    std::vector<int> wp((nt + 31) / 32), lp(32);
    for (size_t i = 0; i < wp.size(); i++) wp[i] = int(i);
    for (int i = 0; i < 32; i++) lp[size_t(i)] = i;
    std::shuffle(wp.begin(), wp.end(), rng);
    std::shuffle(lp.begin(), lp.end(), rng);
    for (int i = 0; i < int(nt); i++)
      rank_of[size_t(i)] = uint64_t(wp[size_t(i / 32)]) * 64 + uint64_t(lp[size_t(i % 32)]);
  }
  // Block order: forward, reverse or shuffled (blocks must not depend on each other's order).
  std::vector<std::pair<unsigned, unsigned>> order;
  for (unsigned y = 0; y < grid.y; y++)
    for (unsigned x = 0; x < grid.x; x++) order.push_back({x, y});
  if (policy == 2) std::reverse(order.begin(), order.end());
  if (policy >= 3) std::shuffle(order.begin(), order.end(), rng);
  for (auto [x, y] : order) run_block(x, y);
  body = nullptr;
}

void syncthreads() {
  if (exited) sync_after_exit = true, report("__syncthreads after a thread of the block exited");
  arrive(block_bar);
}
void syncwarp() { arrive(warp_bars[size_t(cur / 32)]); }

uint64_t shfl_xor_bits(uint64_t bits, unsigned mask, int lanemask, int width) {
  if (mask != 0xffffffffu || width != 32) report("shuffle with a partial mask or width (not emulated)");
  const int t = cur, w = t / 32, lane = t % 32;
  slots[size_t(t)] = bits;
  slot_lm[size_t(t)] = lanemask;
  arrive(warp_bars[size_t(w)]);
  const int p = lane ^ lanemask;
  uint64_t r = 0;
  if (w * 32 + p >= nthreads) {
    report("shuffle partner outside the block");
  } else {
    if (slot_lm[size_t(w * 32 + p)] != lanemask) report("divergent shuffle: lanes passed different masks");
    r = slots[size_t(w * 32 + p)];
  }
  arrive(warp_bars[size_t(w)]);
  return r;
}

void shared_touch(void* p, size_t bytes) {
  if (touched.insert(p).second) {
    std::memset(p, 0xff, bytes);
    shared_bytes += bytes;
    if (shared_bytes > 48 * 1024) report("static shared memory above 48 KiB");
  }
}
}  // namespace emu

// ------------------------------------------------------------------ CUDA runtime (host memory stands in)
namespace {
void* poisoned(size_t n) {
  void* p = std::malloc(n ? n : 1);
  std::memset(p, 0xff, n);  // all-ones floats/doubles are NaN: unwritten scratch shows
  return p;
}
}  // namespace
cudaError_t cudaMalloc(void** p, size_t n) { return *p = poisoned(n), cudaSuccess; }
cudaError_t cudaFree(void* p) { return std::free(p), cudaSuccess; }
cudaError_t cudaMallocAsync(void** p, size_t n, cudaStream_t) { return *p = poisoned(n), cudaSuccess; }
cudaError_t cudaFreeAsync(void* p, cudaStream_t) { return std::free(p), cudaSuccess; }
cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, enum cudaMemcpyKind, cudaStream_t) {
  std::memmove(d, s, n);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* d, int v, size_t n, cudaStream_t) {
  return std::memset(d, v, n), cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaGetLastError(void) {
  const cudaError_t e = emu::last_error;
  emu::last_error = cudaSuccess;
  return e;
}
const char* cudaGetErrorString(cudaError_t e) {
  return e == cudaSuccess ? "no error" : "emulated launch error";
}

// ------------------------------------------------------------------ cuBLASLt
namespace emu {
struct Desc {
  cublasComputeType_t compute;
  cudaDataType_t scale;
  cublasOperation_t ta = CUBLAS_OP_N, tb = CUBLAS_OP_N;
};
struct Layout {
  cudaDataType type;
  uint64_t rows, cols;
  int64_t ld;
};
long gemm_calls = 0;
int lt_bad = 0;
}  // namespace emu

cublasStatus_t cublasLtCreate(cublasLtHandle_t* h) {
  *h = reinterpret_cast<cublasLtHandle_t>(new int(1));
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* d, cublasComputeType_t c, cudaDataType_t s) {
  if (s != CUDA_R_32F || (c != CUBLAS_COMPUTE_32F && c != CUBLAS_COMPUTE_32F_FAST_16BF)) {
    emu::lt_bad++;
    return CUBLAS_STATUS_NOT_SUPPORTED;
  }
  *d = reinterpret_cast<cublasLtMatmulDesc_t>(new emu::Desc{c, s});
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
  delete reinterpret_cast<emu::Desc*>(d);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a,
                                              const void* buf, size_t n) {
  auto* e = reinterpret_cast<emu::Desc*>(d);
  if (n != sizeof(int32_t) || (a != CUBLASLT_MATMUL_DESC_TRANSA && a != CUBLASLT_MATMUL_DESC_TRANSB)) {
    emu::lt_bad++;
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  int32_t v;
  std::memcpy(&v, buf, 4);
  (a == CUBLASLT_MATMUL_DESC_TRANSA ? e->ta : e->tb) = cublasOperation_t(v);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* l, cudaDataType t, uint64_t rows,
                                          uint64_t cols, int64_t ld) {
  // column-major (the default order): ld >= rows
  if (t != CUDA_R_32F || ld < int64_t(std::max<uint64_t>(rows, 1))) {
    std::printf("  EMU cuBLASLt: bad layout rows %lu cols %lu ld %ld\n", (unsigned long)rows,
                (unsigned long)cols, (long)ld);
    emu::lt_bad++;
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  *l = reinterpret_cast<cublasLtMatrixLayout_t>(new emu::Layout{t, rows, cols, ld});
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
  delete reinterpret_cast<emu::Layout*>(l);
  return CUBLAS_STATUS_SUCCESS;
}
namespace emu {
struct Pref {
  uint64_t ws = 0;
  uint32_t align[4] = {256, 256, 256, 256};  // cuBLASLt's default minimum alignments (A, B, C, D)
};
}  // namespace emu
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* p) {
  *p = reinterpret_cast<cublasLtMatmulPreference_t>(new emu::Pref);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
  delete reinterpret_cast<emu::Pref*>(p);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t a, const void* buf,
                                                    size_t n) {
  auto* e = reinterpret_cast<emu::Pref*>(p);
  int slot = -1;
  if (a == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES) slot = 0;
  if (a == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES) slot = 1;
  if (a == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES) slot = 2;
  if (a == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES) slot = 3;
  if (slot >= 0 && n == sizeof(uint32_t)) {
    uint32_t v;
    std::memcpy(&v, buf, 4);
    if (v == 0 || (v & (v - 1))) {
      emu::lt_bad++;
      return CUBLAS_STATUS_INVALID_VALUE;
    }
    e->align[slot] = v;
    return CUBLAS_STATUS_SUCCESS;
  }
  if (a != CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES || n != sizeof(uint64_t)) {
    std::printf("  EMU cuBLASLt: preference attribute %d size %zu not emulated\n", int(a), n);
    emu::lt_bad++;
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  std::memcpy(&e->ws, buf, 8);
  return CUBLAS_STATUS_SUCCESS;
}
namespace {
// op(X) dims of a stored layout
void op_dims(const emu::Layout& l, cublasOperation_t op, uint64_t& r, uint64_t& c) {
  r = op == CUBLAS_OP_N ? l.rows : l.cols;
  c = op == CUBLAS_OP_N ? l.cols : l.rows;
}
bool consistent(const emu::Desc& d, const emu::Layout& a, const emu::Layout& b, const emu::Layout& c,
                const emu::Layout& dd) {
  uint64_t ar, ac, br, bc;
  op_dims(a, d.ta, ar, ac);
  op_dims(b, d.tb, br, bc);
  return ar == c.rows && ac == br && bc == c.cols && c.rows == dd.rows && c.cols == dd.cols && c.ld == dd.ld;
}
}  // namespace
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t d,
                                              cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                              cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t dd,
                                              cublasLtMatmulPreference_t pref, int req,
                                              cublasLtMatmulHeuristicResult_t res[], int* found) {
  using namespace emu;
  if (!consistent(*reinterpret_cast<Desc*>(d), *reinterpret_cast<Layout*>(a), *reinterpret_cast<Layout*>(b),
                  *reinterpret_cast<Layout*>(c), *reinterpret_cast<Layout*>(dd))) {
    std::printf("  EMU cuBLASLt: inconsistent shapes\n");
    lt_bad++;
    *found = 0;
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  if (req < 1) return CUBLAS_STATUS_INVALID_VALUE;
  std::memset(&res[0], 0, sizeof(res[0]));
  res[0].state = CUBLAS_STATUS_SUCCESS;
  // the algorithm remembers the alignments it was chosen for: cublasLtMatmul checks the pointers against them
  std::memcpy(res[0].algo.data, reinterpret_cast<Pref*>(pref)->align, sizeof(uint32_t) * 4);
  *found = 1;
  return CUBLAS_STATUS_SUCCESS;
}
namespace {
float bf16_round(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }
}  // namespace
cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t dsc, const void* alpha, const void* A,
                              cublasLtMatrixLayout_t la, const void* B, cublasLtMatrixLayout_t lb,
                              const void* beta, const void* C, cublasLtMatrixLayout_t lc, void* D,
                              cublasLtMatrixLayout_t ld_, const cublasLtMatmulAlgo_t* algo, void*, size_t,
                              cudaStream_t) {
  using namespace emu;
  gemm_calls++;
  uint32_t need[4];
  std::memcpy(need, algo->data, sizeof need);
  const void* ptrs[4] = {A, B, C, D};
  for (int i = 0; i < 4; i++)
    if (reinterpret_cast<uintptr_t>(ptrs[i]) % need[i]) {
      std::printf("  EMU cuBLASLt: operand %c at %p is not %u-byte aligned as its algorithm assumes\n",
                  "ABCD"[i], ptrs[i], need[i]);
      lt_bad++;
      return CUBLAS_STATUS_INVALID_VALUE;
    }
  const Desc& d = *reinterpret_cast<Desc*>(dsc);
  const Layout &a = *reinterpret_cast<Layout*>(la), &b = *reinterpret_cast<Layout*>(lb),
               &c = *reinterpret_cast<Layout*>(lc), &dl = *reinterpret_cast<Layout*>(ld_);
  if (!consistent(d, a, b, c, dl)) {
    lt_bad++;
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  const bool fast16 = d.compute == CUBLAS_COMPUTE_32F_FAST_16BF;
  const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  const float *Af = static_cast<const float*>(A), *Bf = static_cast<const float*>(B),
              *Cf = static_cast<const float*>(C);
  float* Df = static_cast<float*>(D);
  const int64_t m = int64_t(c.rows), n = int64_t(c.cols);
  uint64_t kr, kc;
  op_dims(a, d.ta, kr, kc);
  const int64_t k = int64_t(kc);
  std::vector<float> out(size_t(m * n));
  for (int64_t j = 0; j < n; j++)
    for (int64_t i = 0; i < m; i++) {
      double s = 0;
      for (int64_t p = 0; p < k; p++) {
        float x = d.ta == CUBLAS_OP_N ? Af[i + p * a.ld] : Af[p + i * a.ld];
        float y = d.tb == CUBLAS_OP_N ? Bf[p + j * b.ld] : Bf[j + p * b.ld];
        if (fast16) x = bf16_round(x), y = bf16_round(y);
        s += double(x) * double(y);
      }
      double r = double(al) * s;
      if (be != 0.f) r += double(be) * double(Cf[i + j * c.ld]);  // beta == 0: C is not read
      out[size_t(i + j * m)] = float(r);
    }
  for (int64_t j = 0; j < n; j++)
    for (int64_t i = 0; i < m; i++) Df[i + j * dl.ld] = out[size_t(i + j * m)];
  return CUBLAS_STATUS_SUCCESS;
}
