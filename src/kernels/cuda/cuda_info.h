// What the CUDA backend can report about itself; a stub when not built.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace longctx {

struct CudaDeviceInfo {
  std::string name;
  int cc_major = 0, cc_minor = 0;
  int64_t total_bytes = 0;
  int sm_count = 0;
};

bool cuda_built();
// Devices the runtime sees; empty with a reason in *why_none otherwise.
std::vector<CudaDeviceInfo> cuda_devices(std::string* why_none);
// The GPU this process computes on: device `index` modulo the devices there are (ranks of a node take
// one each). Call before anything is allocated on it.
void cuda_select_device(int index);
// The current GPU's PCI bus id ("0000:3b:00.0"): which ranks share one GPU. "" when CUDA is not built.
std::string cuda_device_pci_id();
// Device memory for code that feeds device-buffer paths (NcclComm's checks);
// they throw when the backend is not built or the runtime fails.
void* cuda_malloc(size_t bytes);
void cuda_free(void* p);
void cuda_to_device(void* dst, const void* src, size_t bytes);
void cuda_to_host(void* dst, const void* src, size_t bytes);

}  // namespace longctx
