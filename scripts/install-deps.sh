#!/bin/sh
# Install what dfm needs to build, test and run its demo on Debian (bookworm or later).
# --fuzz: also clang, which only `make fuzz` needs (libFuzzer; tests/fuzz/README.md).
# Open MPI (openmpi-bin, libopenmpi-dev) builds dfm-dist-mpi.so, the plugin for jobs started by
# mpirun or srun (lib/dist/dist.h); a build without it runs single processes only.
# Run as root; a non-root user is told the exact command to run instead.
set -eu
PKGS="build-essential pkg-config libarchive-dev libmsgpack-dev libzstd-dev libturbojpeg0-dev
libavformat-dev libavcodec-dev libswscale-dev libavutil-dev libcjson-dev libyaml-dev libsqlite3-dev libopenblas-dev ffmpeg zstd
python3 openmpi-bin libopenmpi-dev"
[ "${1:-}" = --fuzz ] && PKGS="$PKGS clang libclang-rt-dev" # libFuzzer is in the latter
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
  echo "install-deps: all build dependencies are present" >&2
  exit 0
fi
cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: missing Debian packages:$missing" >&2
  echo "hint: run as root:  sudo sh -c '$cmd'" >&2
  exit 1
fi
echo "install-deps: installing$missing" >&2
sh -c "$cmd" >&2
