#!/bin/sh
# First README command: install what is missing, build (Release), run the demo.
set -eu
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DSIMNPO_BUILD_EXAMPLES=ON -DSIMNPO_BUILD_BENCHMARKS=ON
cmake --build build -j "$(nproc)"
scripts/demo.sh
