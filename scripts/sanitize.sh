#!/usr/bin/env bash
# Build fastloss with AddressSanitizer + UndefinedBehaviorSanitizer and run the test suite on it.
#
#   scripts/sanitize.sh                      # the whole suite on the sanitized portable kernels
#   scripts/sanitize.sh tests/test_properties.py -k huber      # any pytest arguments
#   FASTLOSS_AVX2=1 scripts/sanitize.sh      # also build and check the AVX2 twins (twice as long)
#   FASTLOSS_FUZZ_SCALE=10 scripts/sanitize.sh tests/test_properties.py   # 10x the examples
#
# The build happens in a copy of the tree (FASTLOSS_SANITIZE_DIR, default a fresh temporary
# directory), so the normal in-place build is untouched. Python itself is not instrumented: the
# ASan runtime is preloaded (LD_PRELOAD) so it comes first, Python's allocator is routed through
# malloc (PYTHONMALLOC=malloc) so ASan sees every buffer, and leak detection is off (the
# interpreter's own allocations at exit are not leaks of ours; tests/test_leaks.py measures
# ours). Any out-of-bounds access, use after free or undefined behaviour (integer overflow,
# misaligned access, float-to-int overflow, ...) aborts the run with a report: the run passes
# only if the suite passes with no report.
set -euo pipefail

SRC="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python3}"
DIR="${FASTLOSS_SANITIZE_DIR:-$(mktemp -d -t fastloss-sanitize-XXXXXX)}"
CC_="${CC:-gcc}"

echo "fastloss sanitize: building a copy of $SRC in $DIR"
mkdir -p "$DIR"
(cd "$SRC" && git ls-files -co --exclude-standard -z) | (cd "$SRC" && xargs -0 cp --parents -t "$DIR")

export FASTLOSS_CFLAGS="-fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all -fno-omit-frame-pointer -g ${FASTLOSS_CFLAGS:-}"
export FASTLOSS_AVX2="${FASTLOSS_AVX2:-0}"
(cd "$DIR" && "$PY" setup.py build_ext --inplace > build.log 2>&1) || {
    tail -40 "$DIR/build.log"; echo "fastloss sanitize: build failed"; exit 2; }

ASAN_LIB="$("$CC_" -print-file-name=libasan.so)"
UBSAN_LIB="$("$CC_" -print-file-name=libubsan.so)"
if [[ "$ASAN_LIB" != /* ]]; then
    echo "fastloss sanitize: libasan not found (install the compiler's sanitizer runtime)"; exit 2
fi

export LD_PRELOAD="$ASAN_LIB:$UBSAN_LIB"
export PYTHONMALLOC=malloc
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:strict_string_checks=1:check_initialization_order=1:detect_stack_use_after_return=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"

cd "$DIR"
if [[ $# -eq 0 ]]; then
    set -- tests fastloss
fi
echo "fastloss sanitize: running pytest $* (ASan + UBSan, SIMD path: $("$PY" -c 'import fastloss._dispatch as d; print(d.simd_path())'))"
"$PY" -m pytest -q -p no:cacheprovider "$@"
echo "fastloss sanitize: clean (no sanitizer report)"
