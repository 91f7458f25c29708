#!/usr/bin/env bash
# The emulator's own tests (selftest.cpp) in every mode, and the real kernels' driver
# (kernels_driver.cpp) under ThreadSanitizer with real threads. Usage: run.sh [--no-tsan]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../../.."
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
emu_sources=("$here"/../src/*.cpp)
flags=(-std=c++17 -O1 -g -pthread -ffp-contract=off -fno-strict-aliasing -Wall -Wextra -Wno-unknown-pragmas
       -Wno-subobject-linkage -DFO_CUDA_EMULATED=1 -DFO_CUDA_ARCHS='"emulated"' -I"$here/../include")

units=("$root"/tools/cuda-emu/units/cuda_device.cpp "$root"/tools/cuda-emu/units/cuda_memory.cpp "$root"/tools/cuda-emu/units/cuda_grad_ops.cpp
       "$root"/tools/cuda-emu/units/cuda_adamw.cpp)
# The two builds at once (CI has 2 cores); the TSan one is waited for below.
if [[ "${1:-}" != --no-tsan ]]; then
  g++ "${flags[@]}" -fsanitize=thread "$here/kernels_driver.cpp" "${units[@]}" "${emu_sources[@]}" -o "$out/kernels_tsan" &
  tsan_build=$!
fi
g++ "${flags[@]}" "$here/selftest.cpp" "${emu_sources[@]}" -o "$out/selftest"
for mode in "" thread-order=reverse,block-order=random exec=eager protect=mprotect threads=os; do
  if [[ "$mode" == exec=eager ]]; then
    # The death test of a free under queued work needs queued work.
    FO_CUDA_EMU="$mode" CUDA_EMU_SELFTEST_NO_DEATH=1 "$out/selftest"
  else
    FO_CUDA_EMU="$mode" "$out/selftest"
  fi
done

[[ "${1:-}" == --no-tsan ]] && exit 0
wait "$tsan_build"
FO_CUDA_EMU=threads=os TSAN_OPTIONS=halt_on_error=1 "$out/kernels_tsan"
