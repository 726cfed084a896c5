#!/bin/sh
# Second README command (and CI's): the whole test suite, three ways:
#   1. Release build, every ctest (gradient checks, PyTorch parity, I/O, CLI, install); with
#      nvcc present it compiles the CUDA backend's programs too, and the GPU tests (label gpu)
#      report themselves skipped on a machine without a GPU;
#   2. AddressSanitizer + UndefinedBehaviorSanitizer build, every ctest but the install one,
#      the compile-only one, the programs' (the command's and the two studies': not built
#      there; the TOFU study alone would be about 20 min of allocation-heavy decoding; the
#      Release pass runs them, and the library code they use has tests of its own that run
#      here);
#   3. the libFuzzer targets, FUZZ_SECONDS (default 10) each: six targets, 60 s in all.
# It prints the time spent after each phase ("test.sh: ... done, N s in").
set -eu
cd "$(dirname "$0")/.."
started=$(date +%s)
phase() { echo "test.sh: $1 done, $(($(date +%s) - started)) s in"; }
scripts/install-deps.sh
jobs=$(nproc)

# The benchmarks are not built here (2.5 min, the build's tail): the first README
# command (scripts/setup.sh) builds them.
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DSIMNPO_WARNINGS_AS_ERRORS=ON \
    -DSIMNPO_BUILD_TESTS=ON -DSIMNPO_BUILD_EXAMPLES=ON -DSIMNPO_BUILD_BENCHMARKS=OFF
cmake --build build -j "$jobs"
phase "Release build"
ctest --test-dir build --output-on-failure -j "$jobs"
phase "Release tests"

# oneDNN stays on (its JIT kernels are not instrumented, but the code that
# drives them is); CUDA is off: the sanitizers do not instrument GPU code, and
# the Release build compiled it.
# -g1 (line tables only, in CMAKE_CXX_FLAGS_DEBUG, whose -g would come after
# it and win): the reports keep their file:line, and a heavy test compiles in
# 130 s instead of 175. The compile-only test (label compile) ran in pass 1.
# No programs (examples) and so no tests of them (label cli): the simnpo command
# is 5 CPU-min of compile and test_cli 270 s under the sanitizers, the tail of
# the pass; the library code it drives has tests of its own that run here.
cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=Debug -DSIMNPO_BUILD_TESTS=ON -DSIMNPO_BUILD_EXAMPLES=OFF -DSIMNPO_BUILD_BENCHMARKS=OFF -DSIMNPO_WITH_CUDA=OFF \
    -DCMAKE_CXX_FLAGS="-O1 -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" \
    -DCMAKE_CXX_FLAGS_DEBUG="-g1"
cmake --build build-sanitize -j "$jobs"
phase "sanitizer build"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-sanitize --output-on-failure -j "$jobs" --label-exclude 'install|study|compile|cli'
phase "sanitizer tests"

tests/fuzz/run.sh "${FUZZ_SECONDS:-10}"
phase "fuzzing"
echo "test.sh: all passed"
