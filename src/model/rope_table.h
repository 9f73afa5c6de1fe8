#pragma once
#include <vector>

#include "model/config.h"

namespace longctx {

// inv_freq (HS/2) after rope scaling (default, linear, llama3), in double.
std::vector<double> rope_inv_freq(const LlamaConfig& c);
// cos, sin (P, HS/2) for positions [0, P), computed in double, stored fp32.
void rope_tables(const LlamaConfig& c, int64_t P, float* cos, float* sin);

}  // namespace longctx
