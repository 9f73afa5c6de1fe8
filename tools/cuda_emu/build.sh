#!/bin/bash
# build.sh OUT GENDIR [extra flags...]: the emulated kernels from GENDIR (made by gen.py) + the CPU kernels.
# JOBS=n (default 2): compilations at a time.
set -e
cd "$(dirname "$0")"
OUT=$1; GEN=$2; shift 2
SRC=$(cd ../../src && pwd)
mkdir -p obj/cpu "obj/$OUT"
CPUFLAGS="-std=c++20 -O2 -march=native -fopenmp -I $SRC -I /usr/include/x86_64-linux-gnu/openblas-openmp"
throttle() { while [ "$(jobs -rp | wc -l)" -ge "${JOBS:-2}" ]; do wait -n || true; done; }
for f in elementwise embedding rmsnorm rope swiglu matmul lm_head_loss attention_fwd attention_bwd; do
  dep=$SRC/kernels/cpu/$f.cpp; case $f in attention_*) dep="$dep $SRC/kernels/cpu/attention_internal.h";; esac
  newer=1; for x in $dep; do [ obj/cpu/$f.o -nt $x ] || newer=0; done
  [ $newer = 1 ] || { rm -f obj/cpu/$f.o; throttle; g++ $CPUFLAGS -c $SRC/kernels/cpu/$f.cpp -o obj/cpu/$f.o & }
done
[ obj/cpu/check.o -nt $SRC/core/check.cpp ] || g++ $CPUFLAGS -c $SRC/core/check.cpp -o obj/cpu/check.o
wait
EMUFLAGS="-std=c++20 -O2 -g -Wall -Wno-unused-function -Wno-unknown-pragmas -I . -I stub -I $GEN -I $SRC -I /usr/local/cuda/include $*"
objs=""
for f in $GEN/kernels/cuda/*.cu.cpp emu_runtime.cpp test*.cpp; do
  o=obj/$OUT/$(basename $f .cpp).o
  rm -f $o; throttle; g++ $EMUFLAGS -c $f -o $o &
  objs="$objs $o"
done
wait
g++ $* -fopenmp -o $OUT $objs obj/cpu/*.o -L/usr/lib/x86_64-linux-gnu/openblas-openmp -lopenblas -Wl,-rpath,/usr/lib/x86_64-linux-gnu/openblas-openmp
echo built $OUT
