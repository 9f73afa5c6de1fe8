#pragma once
#include <vector>

#include "model/config.h"

namespace longctx {

// inv_freq (HS/2) after rope scaling (default, linear, llama3, yarn), in double.
std::vector<double> rope_inv_freq(const LlamaConfig& c);
// What cos and sin are multiplied by: yarn's attention_factor, else 1. Both q
// and k are rotated by the scaled tables, so attention logits grow by its square.
double rope_attention_scale(const LlamaConfig& c);
// cos, sin (P, HS/2) for positions [0, P), computed in double, stored fp32.
void rope_tables(const LlamaConfig& c, int64_t P, float* cos, float* sin);
// cos, sin (n, HS/2): row r for position pos[r] (pos null: r). Chunked
// training uses one row per token so its tables scale with the chunk.
void rope_rows(const LlamaConfig& c, const int32_t* pos, int64_t n, float* cos, float* sin);

}  // namespace longctx
