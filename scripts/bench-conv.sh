#!/bin/sh
# bench-conv.sh — conv3d GFLOP/s on the Wan VAE's main shapes against OpenBLAS sgemm peak in
# the same run. Builds libdfm with the Makefile, then scripts/bench_ops.c with the same CFLAGS
# and LDLIBS against it. Arguments after "--" go to bench_ops (--threads N, --tile BYTES,
# --reps N, --quick); the others are make variables (e.g. SAN=0 NVCC=).
#   scripts/bench-conv.sh                 # all shapes, all cores
#   scripts/bench-conv.sh -- --threads 1  # one thread
set -eu
cd "$(dirname "$0")/.."
makevars=""
while [ $# -gt 0 ] && [ "$1" != "--" ]; do makevars="$makevars $1"; shift; done
[ $# -gt 0 ] && shift
# shellcheck disable=SC2086
mkvar() { make -s --no-print-directory $makevars --eval='print-%: ; @echo $($*)' "print-$1"; }
build=$(mkvar BUILD)
# shellcheck disable=SC2086
make -s --no-print-directory $makevars "$build/libdfm.a"
# shellcheck disable=SC2046
${CC:-cc} $(mkvar CFLAGS) -o "$build/bench_ops" scripts/bench_ops.c "$build/libdfm.a" $(mkvar LDLIBS)
exec "$build/bench_ops" "$@"
