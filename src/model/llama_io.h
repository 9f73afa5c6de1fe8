// Model directories in Hugging Face layout: config.json + safetensors.
#pragma once
#include <string>

#include "model/config.h"
#include "model/params.h"

namespace longctx {

// Fill p from DIR (single or sharded safetensors); every parameter of the
// table must be there with its exact shape. Errors name the file and tensor.
void load_params(ParamSet& p, const std::string& dir);
// DIR/config.json and DIR/model.safetensors (fp32), written atomically.
void save_model_dir(const std::string& dir, const LlamaConfig& c, const ParamSet& p);
// Every tensor of p under its HF name, fp32.
void save_params(const std::string& path, const ParamSet& p);

}  // namespace longctx
