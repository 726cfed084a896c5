#!/bin/sh
# The main demo: the paper's mixture-of-Markov-chains study (examples/markov_study),
# about 7 minutes on 2 cores the first time, about 5 once its models are cached.
# Run from the repo root after a build (scripts/setup.sh does both); BUILD names
# the build directory. The table is printed; results and pictures go to
# $BUILD/markov-study.
set -eu

build=${BUILD:-build}
"$build/bin/markov_study" --out "$build/markov-study"
