#!/bin/sh
# The GPU checks in one go, for a machine with an NVIDIA GPU (sized for under 5
# minutes on an H200): builds the CUDA programs for sm_90, runs the CPU-vs-GPU
# parity tests, then the GPU benchmark against eager PyTorch, and prints a table.
#
#   tests/gpu/run.sh [BUILD_DIR]        build into BUILD_DIR (default build-gpu), then run
#   tests/gpu/run.sh --prebuilt DIR     run programs already built (DIR/tests, DIR/benchmarks),
#                                       for a GPU machine without the build's dependencies
# Environment: ROUNDS (default 1) and REPEATS (default 5) for the benchmark; OUT, if set, a
# directory for the logs and the benchmark's JSON.
set -u
cd "$(dirname "$0")/../.."
out=${OUT:-build-gpu-results}
mkdir -p "$out"

if [ "${1:-}" = "--prebuilt" ]; then
    build=${2:?--prebuilt needs a directory}
else
    build=${1:-build-gpu}
    cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DSIMNPO_WITH_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
        -DSIMNPO_BUILD_TESTS=ON -DSIMNPO_BUILD_BENCHMARKS=ON -DSIMNPO_BUILD_EXAMPLES=ON -DSIMNPO_USE_DNNL=OFF \
        || exit 1
    cmake --build "$build" -j "$(nproc)" --target test_cuda_parity bench_cuda simnpo_cli || exit 1
fi

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true

status=0
echo "== parity: CPU backend vs CUDA backend"
if SIMNPO_FIXTURES_DIR="$PWD/tests/fixtures" "$build/tests/test_cuda_parity" --log_level=test_suite --report_level=short >"$out/parity.log" 2>&1; then
    parity=passed
else
    parity="FAILED (exit $?)"
    status=1
fi
tail -n 40 "$out/parity.log"

echo "== the simnpo command: --device cuda against --device cpu"
if tests/gpu/cli_parity.sh "$build/bin/simnpo" "${TMPDIR:-/tmp}/simnpo-cli-parity" >"$out/cli.log" 2>&1; then
    cli=passed
else
    cli="FAILED"
    status=1
fi
tail -n 5 "$out/cli.log"

echo "== benchmark: simnpo vs eager PyTorch, GPT-2 small training step"
if python3 benchmarks/compare_cuda.py --build "$build" --rounds "${ROUNDS:-1}" --repeats "${REPEATS:-5}" \
    --json "$out/compare_cuda.json" >"$out/benchmark.txt" 2>"$out/benchmark.log"; then
    benchmark=done
else
    benchmark="FAILED"
    status=1
    tail -n 20 "$out/benchmark.log"
fi

echo
echo "== summary"
echo "parity tests: $parity"
echo "command-line parity: $cli"
cat "$out/benchmark.txt"
echo "benchmark: $benchmark"
exit $status
