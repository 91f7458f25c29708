#!/usr/bin/env bash
# The GPU check, in one call on a lent GPU machine (CUDA, PyTorch, compute-sanitizer, no
# Node.js). Prepare on the development machine with `npm run gpu-check:pack` (a real CUDA
# build of the addon in build/Release), then run there with the device tool:
#     run: bash scripts/gpu-check.sh        carry: [".gpu-check"]
# It unpacks its own Node, runs the CUDA-vs-CPU suites on the GPU, compute-sanitizer's
# memcheck and racecheck over scripts/gpu-smoke.mjs, the GPU benchmark (every optimizer and
# dtype layout, one big tensor to 4096 small ones, against the device copy bandwidth) and
# bench/torch_fused_adamw.py in the same call, and prints a short table last. Logs and JSON
# go to $OUT (or a temporary folder). Each part has its own time limit and the whole stays
# under 8 minutes on an H200; a failing part is reported and the others still run.
#
#   bash scripts/gpu-check.sh [--emulated] [--quick]
#     --emulated  try it on the development machine with the CUDA host emulator build:
#                 no GPU, no compute-sanitizer, no torch (those parts are skipped)
#     --quick     the benchmark's small sizes
set -uo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
emulated=0
quick=()
for arg in "$@"; do
  case "$arg" in
    --emulated) emulated=1 ;;
    --quick) quick=(--quick) ;;
    *) echo "usage: bash scripts/gpu-check.sh [--emulated] [--quick]" >&2; exit 2 ;;
  esac
done
out="${OUT:-$(mktemp -d)}"
mkdir -p "$out"
results=()  # "part|status|detail"
record() { results+=("$1|$2|$3"); echo "== $1: $2 $3"; }
started=$(date +%s)

# --- Node, node_modules, the addon, dist ------------------------------------------------------
pack="$root/.gpu-check"
# GPU_CHECK_OWN_NODE=1 uses the packed Node even where one is installed (to try the pack here).
if [ -n "${GPU_CHECK_OWN_NODE:-}" ] || ! command -v node >/dev/null 2>&1; then
  [ -f "$pack/node.tar.xz" ] || { echo "no node and no $pack/node.tar.xz: run npm run gpu-check:pack first" >&2; exit 1; }
  mkdir -p "$pack/bin" && tar -xJf "$pack/node.tar.xz" -C "$pack/bin"
  export PATH="$pack/bin:$PATH"
fi
[ -d node_modules/vitest ] || tar -xJf "$pack/modules.tar.xz" -C "$root"
[ -f "$pack/build.tar.xz" ] && tar -xJf "$pack/build.tar.xz" -C "$root"
[ -f "$pack/manifest.json" ] && cp "$pack/manifest.json" "$out/manifest.json"

# --- the machine ------------------------------------------------------------------------------
gpu="none"
driver="?"
if command -v nvidia-smi >/dev/null 2>&1; then
  gpu="$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -n 1)"
  driver="$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -n 1)"
fi
node bin/fused-optim.js info --json > "$out/info.json" 2> "$out/info.err"
backend="$(node -e "const i = require('$out/info.json'); console.log(i.backend + (i.emulated ? ' (emulated)' : '') + ', ' + i.device)" 2>/dev/null || echo '?')"
commit="$(node -e "try { console.log(require('$out/manifest.json').commit) } catch { console.log('?') }")"
echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) GPU: $gpu, driver $driver; fused-optim backend: $backend; commit $commit; node $(node --version)"
if [ "$emulated" = 0 ] && ! grep -q '"backend": "cuda"' "$out/info.json"; then
  cat "$out/info.err" "$out/info.json"
  record "backend" "FAIL" "the CUDA backend is not usable here (see info.json)"
fi

# --- the CUDA-vs-CPU suites -------------------------------------------------------------------
suite_log="$out/cuda-suites.txt"
timeout 240 node node_modules/vitest/vitest.mjs run test/cuda > "$suite_log" 2>&1
rc=$?
counts="$(grep -E 'Tests ' "$suite_log" | tail -n 1 | sed -E 's/\x1b\[[0-9;]*m//g; s/^ *Tests *//')"
if [ $rc = 0 ]; then record "CUDA-vs-CPU suites" "pass" "$counts"; else record "CUDA-vs-CPU suites" "FAIL" "rc $rc; $counts (cuda-suites.txt)"; fi

# --- compute-sanitizer ------------------------------------------------------------------------
if [ "$emulated" = 1 ]; then
  record "memcheck, racecheck" "skipped" "(emulated build)"
elif ! command -v compute-sanitizer >/dev/null 2>&1; then
  record "memcheck, racecheck" "skipped" "compute-sanitizer not found"
else
  for tool in memcheck racecheck; do
    log="$out/sanitizer-$tool.txt"
    timeout 150 compute-sanitizer --tool "$tool" --error-exitcode 3 --target-processes all \
      node scripts/gpu-smoke.mjs > "$log" 2>&1
    rc=$?
    summary="$(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|Device not supported' "$log" | tail -n 1)"
    if [ $rc = 0 ]; then record "$tool" "pass" "$summary"
    elif grep -q 'Device not supported' "$log"; then record "$tool" "skipped" "compute-sanitizer: device not supported on this runtime"
    else record "$tool" "FAIL" "rc $rc; $summary ($(basename "$log"))"; fi
  done
fi

# --- the benchmark, and torch's fused AdamW in the same call ----------------------------------
# On the emulator (tens of ms per million elements) one case shows the path works; a GPU runs all.
only=()
[ "$emulated" = 1 ] && only=(--filter '^medium-64/adamw/fp32$' --no-many-params --no-overhead)
timeout 240 node bench/run.mjs --device cuda "${quick[@]}" "${only[@]}" --no-peers --no-tfjs --no-progress --json \
  --out "$out/fused.json" > /dev/null 2> "$out/bench.err"
rc=$?
if [ $rc = 0 ]; then
  node bench/run.mjs --from "$out/fused.json" > "$out/fused.txt" 2>&1
  record "benchmark" "pass" "(fused.txt)"
else
  record "benchmark" "FAIL" "rc $rc (bench.err)"
fi
# Low-bit optimizer state (issue 17): every optimizer with fp32, bf16 and 8-bit state.
sd_quick=("${quick[@]}")
[ "$emulated" = 1 ] && sd_quick=(--quick)
timeout 150 node bench/state_dtypes.mjs --device cuda "${sd_quick[@]}" > "$out/state_dtypes.txt" 2> "$out/state_dtypes.err"
rc=$?
if [ $rc = 0 ]; then record "state dtypes" "pass" "(state_dtypes.txt)"; else record "state dtypes" "FAIL" "rc $rc (state_dtypes.err)"; fi
if [ "$emulated" = 1 ]; then
  record "torch fused AdamW" "skipped" "(emulated build)"
elif ! python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  record "torch fused AdamW" "skipped" "python3 has no CUDA torch"
else
  timeout 180 python3 bench/torch_fused_adamw.py "${quick[@]}" --out "$out/torch.json" > /dev/null 2> "$out/torch.err"
  rc=$?
  if [ $rc = 0 ] && [ -f "$out/fused.json" ]; then
    node bench/compare_torch.mjs "$out/fused.json" "$out/torch.json" > "$out/compare.txt" 2>&1
    record "torch fused AdamW" "pass" "(compare.txt)"
  else
    record "torch fused AdamW" "FAIL" "rc $rc (torch.err)"
  fi
fi

# --- the short table last ---------------------------------------------------------------------
echo
[ -f "$out/fused.json" ] && node scripts/gpu-check-summary.mjs "$out" 2>&1
echo
echo "GPU check, $(date -u +%Y-%m-%d), $gpu, driver $driver, commit $commit, $(( $(date +%s) - started )) s; logs in $out"
status=0
for r in "${results[@]}"; do
  IFS='|' read -r part st detail <<< "$r"
  printf '  %-22s %-8s %s\n' "$part" "$st" "$detail"
  [ "$st" = "FAIL" ] && status=1
done
exit $status
