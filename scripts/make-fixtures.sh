#!/bin/sh
# make-fixtures.sh: regenerate every committed test fixture under tests/fixtures/ (`make fixtures`).
#
# Runs, from the repository root and in name order:
#   scripts/make-media-fixtures.sh          (needs the ffmpeg CLI, python3 with Pillow + numpy)
#   every scripts/make-*.py                 (fixture generators: python3 with torch, diffusers,
#                                            transformers, safetensors, numpy ... from PyPI)
#   then the generators that read another's output (LATE below): make-train-fixtures.py trains the
#   model that make-wan-transformer-fixtures.py writes; make-sample-fixtures.py samples with the
#   VAE, UMT5, tokenizer and demo transformer fixtures
# Each generator is run with no arguments and writes its own directory under tests/fixtures/.
# All of them run even if one fails; the exit status is non-zero if any failed.
# Python is only needed here, never by `make test`. See docs/fixtures.md.
# Environment: PYTHON (default python3) picks the interpreter for the .py generators.
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
failed=""
run() {
    echo "make-fixtures: $*" >&2
    if ! "$@"; then
        failed="$failed $2"
    fi
}
if [ -f scripts/make-media-fixtures.sh ]; then
    run sh scripts/make-media-fixtures.sh
fi
LATE="scripts/make-train-fixtures.py scripts/make-sample-fixtures.py"
for s in scripts/make-*.py; do
    [ -f "$s" ] || continue
    case " $LATE " in *" $s "*) continue ;; esac
    run "$PYTHON" "$s"
done
for s in $LATE; do
    [ -f "$s" ] && run "$PYTHON" "$s"
done
if [ -n "$failed" ]; then
    echo "make-fixtures: FAILED:$failed" >&2
    exit 1
fi
echo "make-fixtures: all fixtures regenerated; review with git status / git diff --stat tests/fixtures" >&2
