#pragma once
#include_next <cuda_runtime.h>

#include "emu_device.h"
