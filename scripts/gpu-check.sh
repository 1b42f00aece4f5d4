#!/bin/sh
# scripts/gpu-check.sh [BINDIR] — the CUDA backend's checks on a GPU machine, in one run of under
# 10 minutes once the build is done (BINDIR default bin; when BINDIR/dfm-unit-tests is missing
# and BINDIR is bin, it first runs `make -j$(nproc)`).
#
# Phases, each under its own timeout (seconds in the second column of the summary):
#   info       nvidia-smi, the driver's and the toolkit's versions, the CUDA libraries linked
#   device     the device is selected (cuda_device_query under DFM_REQUIRE_CUDA=1); on failure
#              ("no CUDA device: ...", an old driver, a GPU this build has no code for) nothing
#              else runs
#   unit:X     bin/dfm-unit-tests X for X in backend cuda finite ops_text umt5 wan_vae dist, with
#              DFM_REQUIRE_CUDA=1 (a skip is a failure) and CUDA_LAUNCH_BLOCKING=1 (a kernel
#              fault is reported by the call that launched it)
#   memcheck   the CUDA backend tests under compute-sanitizer --tool memcheck, then
#   racecheck  under --tool racecheck (both skipped when compute-sanitizer is not installed)
#   big        DFM_GPU_BIG=1 bin/dfm-unit-tests gpu_big (tests/unit/test_gpu_big.c: over 2^31
#              elements, past the grid limits, the production shapes)
# Then a summary; the exit status is 0 only when every phase passed. The phases after the build
# share a deadline of GPU_CHECK_SECONDS (default 570): a phase gets at most the time left, and one
# with under 10 s left does not run and fails.
# Environment: GPU_CHECK_LOGS (a directory for the phases' logs; default a new temporary one),
# GPU_CHECK_SAN_TESTS (test filters run under compute-sanitizer; default "backend_cuda
# backend_convert"), GPU_CHECK_SKIP_BIG=1 (no big phase).
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 2
bindir=${1:-bin}
logs=${GPU_CHECK_LOGS:-$(mktemp -d "${TMPDIR:-/tmp}/dfm-gpu-check.XXXXXX")}
mkdir -p "$logs" || exit 2
san_tests=${GPU_CHECK_SAN_TESTS:-backend_cuda backend_convert}
summary=""
failed=0
t_start=$(date +%s)
budget=${GPU_CHECK_SECONDS:-570}

say() { echo "gpu-check: $*"; }
# One summary line: phase, timeout, seconds taken, result.
note() { summary="$summary$(printf '%-26s %5s  %5s  %s' "$1" "$2" "$3" "$4")
"; }

# Run "$@" as phase $name under a timeout of $secs; its output goes to $logs/$name.log.
# Records PASS, FAIL (exit N) or TIMEOUT in the summary. Returns the command's status.
phase() {
    name=$1 secs=$2
    shift 2
    log="$logs/$(echo "$name" | tr ':/ ' '___').log"
    if [ -n "${t_deadline:-}" ]; then
        left=$((t_deadline - $(date +%s)))
        if [ "$left" -lt 10 ]; then
            say "== $name: not run, the ${budget} s are spent"
            note "$name" "-" "-" "NOT RUN (out of time)"
            failed=$((failed + 1))
            return 1
        fi
        [ "$secs" -gt "$left" ] && secs=$left
    fi
    say "== $name (timeout ${secs}s): $*"
    t0=$(date +%s)
    if command -v timeout >/dev/null 2>&1; then
        timeout -k 10 "$secs" "$@" >"$log" 2>&1
    else
        "$@" >"$log" 2>&1
    fi
    rc=$?
    dt=$(($(date +%s) - t0))
    if [ $rc -eq 0 ]; then
        st=PASS
    elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        st=TIMEOUT failed=$((failed + 1))
    else
        st="FAIL (exit $rc)" failed=$((failed + 1))
    fi
    note "$name" "${secs}s" "${dt}s" "$st"
    return $rc
}

# The unit-test runner's verdict: FAIL lines and the messages under them, skips, the last line.
show_unit() {
    grep -E '^(FAIL|  )|skipped|passed, ' "$1" | tail -n 60
}

# ---- info (each command under 30 s: nvidia-smi hangs on some broken drivers) ---------------
to30() {
    if command -v timeout >/dev/null 2>&1; then timeout -k 5 30 "$@"; else "$@"; fi
}
say "== info"
echo "host: $(uname -srm), $(nproc 2>/dev/null || echo ?) cores"
if command -v nvidia-smi >/dev/null 2>&1; then
    to30 nvidia-smi --query-gpu=index,name,compute_cap,driver_version,memory.total,memory.used \
        --format=csv 2>&1
    to30 nvidia-smi 2>&1 | sed -n '1,12p'
else
    echo "nvidia-smi: not found"
fi
if [ -r /proc/driver/nvidia/version ]; then sed -n 1p /proc/driver/nvidia/version; fi
nv=$(command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
if [ -n "$nv" ]; then to30 "$nv" --version | tail -n 2; else echo "nvcc: not found"; fi
if [ -x "$bindir/dfm-unit-tests" ] && command -v ldd >/dev/null 2>&1; then
    ldd "$bindir/dfm-unit-tests" | grep -E 'cudart|cublas|libcuda' || true
fi
echo "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-(unset)}"

# ---- build ---------------------------------------------------------------------------------
if [ ! -x "$bindir/dfm-unit-tests" ]; then
    if [ "$bindir" = bin ]; then
        phase build 1200 make -j"$(nproc 2>/dev/null || echo 4)" || { tail -n 40 "$logs/build.log"; }
    else
        say "$bindir/dfm-unit-tests not found (build it, or run without BINDIR to build bin/)"
        note build - - "FAIL ($bindir/dfm-unit-tests missing)"
        failed=$((failed + 1))
    fi
fi
ut="$bindir/dfm-unit-tests"
t_deadline=$(($(date +%s) + budget))

# ---- device --------------------------------------------------------------------------------
if [ -x "$ut" ]; then
    if phase device 60 env DFM_REQUIRE_CUDA=1 "$ut" cuda_device_query; then
        grep -E '^  \(' "$logs/device.log"
        device_ok=1
    else
        show_unit "$logs/device.log"
        reason=$(grep -E '^  (no CUDA device|CUDA is here but unusable)' "$logs/device.log" | head -n 1 |
            sed -e 's/^  //' -e 's/^CUDA is here but unusable: //' -e 's/, but DFM_REQUIRE_CUDA=.*//')
        say "no usable CUDA device: ${reason:-see $logs/device.log}"
        device_ok=0
    fi
else
    device_ok=0
fi

# ---- unit tests ----------------------------------------------------------------------------
if [ "$device_ok" = 1 ]; then
    for t in backend cuda finite ops_text umt5 wan_vae dist; do
        phase "unit:$t" 150 env DFM_REQUIRE_CUDA=1 CUDA_LAUNCH_BLOCKING=1 "$ut" "$t"
        show_unit "$logs/unit_$t.log"
        if grep -q '^0 passed, 0 failed' "$logs/unit_$t.log"; then
            say "unit:$t: no test matched"
            note "unit:$t" - - "FAIL (no test matched)"
            failed=$((failed + 1))
        fi
    done

    # ---- compute-sanitizer -----------------------------------------------------------------
    cs=$(command -v compute-sanitizer 2>/dev/null || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
    if [ -n "$cs" ]; then
        for tool in memcheck racecheck; do
            for t in $san_tests; do
                # API errors a test provokes on purpose are not faults; kernel accesses are
                phase "$tool:$t" 180 env DFM_REQUIRE_CUDA=1 "$cs" --tool "$tool" --error-exitcode 99 \
                    --report-api-errors no "$ut" "$t"
                grep -E '^=========|^(FAIL|  )|passed, ' "$logs/${tool}_$t.log" | tail -n 40
            done
        done
    else
        say "compute-sanitizer not found: memcheck and racecheck not run"
        note "memcheck, racecheck" - - "not run (no compute-sanitizer)"
    fi

    # ---- big -------------------------------------------------------------------------------
    if [ "${GPU_CHECK_SKIP_BIG:-0}" != 1 ]; then
        phase big 300 env DFM_GPU_BIG=1 DFM_REQUIRE_CUDA=1 "$ut" gpu_big
        cat "$logs/big.log"
    fi
fi

# ---- summary -------------------------------------------------------------------------------
echo
say "summary (phase, timeout, took, result); logs in $logs"
printf '%s' "$summary"
say "$(($(date +%s) - t_start)) s in all"
if [ "$device_ok" != 1 ]; then
    say "FAILED: no usable CUDA device, nothing checked"
    exit 1
fi
if [ "$failed" -ne 0 ]; then
    say "FAILED: $failed phase(s)"
    exit 1
fi
say "all passed"
exit 0
