// What a training step hands to the code that shards weights and gradients
// (parallel/zero.h): where the gradients go, and the unit-by-unit hook. In
// model/ so that parallel/ and train/ need not include each other.
#pragma once
#include "model/lora.h"
#include "model/params.h"

namespace longctx {

// Where a step's gradients go: the base weights (full training) and/or the
// LoRA adapters (base frozen: base is null, no base gradient is computed).
struct Grads {
  ParamSet* base = nullptr;
  LoraSet* lora = nullptr;
};

// ZeRO-2/3 see a step's weights and gradients one unit at a time (unit 0:
// the embedding; unit 1 + l: block l; unit L + 1: the final norm and LM
// head, which with tied embeddings also uses unit 0). begin() comes before a
// unit is used (`weights`: they are read, ZeRO-3 gathers them; `grads`: its
// gradient views are bound to a zeroed buffer), end() after its last use in
// that phase (`grads`: its gradients of this phase are complete and go to the
// ranks that own them). At most one block, or the embedding, or the head is
// whole at any moment.
class UnitHook {
 public:
  virtual ~UnitHook() = default;
  virtual void begin(int unit, bool weights, bool grads) = 0;
  virtual void end(int unit, bool weights, bool grads) = 0;
};

}  // namespace longctx
