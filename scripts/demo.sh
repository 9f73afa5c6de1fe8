#!/usr/bin/env bash
# The main job on its built-in default: install, build, write a random small
# Llama, and run one forward+backward over 4096 random tokens with it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
RUN=${RUN_DIR:-runs/demo}
mkdir -p "$RUN"
./build/bin/longctx info
./build/bin/longctx init --config configs/tiny.json --out "$RUN/model" --seed 0
/usr/bin/python3 -c "import numpy as np; np.save('$RUN/tokens.npy', np.random.default_rng(0).integers(0, 512, size=(1, 4097), dtype=np.int32))"
./build/bin/longctx grad --model "$RUN/model" --tokens "$RUN/tokens.npy" --out "$RUN/grads.safetensors" --repeat 3
