#!/bin/sh
# Installs, as root on Debian 12, every package the build, the demo and the
# tests need. Idempotent: when all are present it changes nothing.
# libopenblas0-pthread is not simnpo's (oneDNN does its products): it is the
# BLAS of the benchmarks' peer, Debian's python3-torch, which with only the
# reference libblas3 runs its products 40x slower than it can.
set -eu

packages="cmake g++ make pkg-config libeigen3-dev libxtensor-dev xtl-dev libboost-test-dev
nlohmann-json3-dev zlib1g-dev libpcre2-dev libutf8proc-dev libdnnl-dev ocl-icd-opencl-dev libbenchmark-dev clang-14 libomp-14-dev libclang-rt-14-dev python3
gnuplot-nox libopenblas0-pthread"

missing=""
for package in $packages; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $package"
done

if [ -z "$missing" ]; then
    echo "install-deps: all packages present"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages:$missing (run this script as root)" >&2
    exit 1
fi
echo "install-deps: installing$missing"
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
