#!/usr/bin/env bash
# Builds the PostgreSQL-free core and its GoogleTest unit tests with
# AddressSanitizer + UndefinedBehaviorSanitizer (-DREPORTSTORE_SANITIZE=ON,
# no recovery: any finding fails the test) in a temporary build directory and
# runs them with ctest. Tests that need the local S3 stack use the
# REPORTSTORE_TEST_S3_* variables when set (see test/run_all.sh) and skip
# otherwise.
#
#   bash test/sanitize.sh
#   bash test/sanitize.sh --build-only DIR   build into DIR only (test/run_all.sh does it in the background)
#   bash test/sanitize.sh --test-only DIR    run the tests of a build made with --build-only
#
# Ends with one summary line "N passed, N failed, N skipped" (ctest's counts;
# a configure or build failure is "0 passed, 1 failed"), after one line
# "skipped: NAME" per skipped test (GTEST_SKIP). A failed test fails the run,
# sanitizer report or not: nothing is retried. REPORTSTORE_KEEP_LOGS=1 keeps
# the logs (not the build) in BUILD.logs when everything passed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE=all
case "${1:-}" in
--build-only) MODE=build; BUILD=${2:?--build-only DIR}; mkdir -p "$BUILD" ;;
--test-only) MODE=test; BUILD=${2:?--test-only DIR} ;;
"") BUILD=$(mktemp -d "${TMPDIR:-/tmp}/reportstore-sanitize.XXXXXX") ;;
*) echo "usage: $0 [--build-only DIR | --test-only DIR]" >&2; exit 2 ;;
esac
JOBS=${REPORTSTORE_SANITIZE_JOBS:-$(nproc 2>/dev/null || echo 2)}

finish() { # finish PASSED FAILED [SKIPPED]
	echo "$1 passed, $2 failed, ${3:-0} skipped"
	if (($2)); then
		echo "build directory kept: $BUILD" >&2
		exit 1
	fi
	if [ "${REPORTSTORE_KEEP_LOGS:-0}" = 1 ]; then
		mkdir -p "$BUILD.logs" && cp "$BUILD"/*.log "$BUILD.logs/" 2>/dev/null
	fi
	rm -rf "$BUILD"
	exit 0
}

t0=$(date +%s)
if [ "$MODE" = test ]; then
	[ -f "$BUILD/CTestTestfile.cmake" ] || { echo "no sanitizer build in $BUILD (--build-only failed?)"; finish 0 1; }
else
# -O0: with UBSan, GCC takes about 6 times longer at -O1 (94 s instead of 16 s
# for s3_client_test.cpp), and the sanitizers find the same bugs.
if ! cmake -S "$ROOT" -B "$BUILD" -DREPORTSTORE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug \
	-DCMAKE_CXX_FLAGS_DEBUG="-g -O0" >"$BUILD/configure.log" 2>&1; then
	tail -n 40 "$BUILD/configure.log"
	finish 0 1
fi
if ! cmake --build "$BUILD" -j"$JOBS" >"$BUILD/build.log" 2>&1; then
	grep -E "error|Error" "$BUILD/build.log" | head -n 40
	finish 0 1
fi
echo "built in $(($(date +%s) - t0)) s"
fi
[ "$MODE" != build ] || exit 0

# halt_on_error/abort: a sanitizer report fails the test that triggered it.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
t0=$(date +%s)
ctest --test-dir "$BUILD" --output-on-failure -j"$JOBS" --timeout 300 >"$BUILD/ctest.log" 2>&1
grep -E "Sanitizer|runtime error|\*\*\*(Failed|Timeout|Exception)|Not Run" "$BUILD/ctest.log" | head -n 40
echo "tests ran in $(($(date +%s) - t0)) s"
tail -n 5 "$BUILD/ctest.log"
total=$(sed -n 's/.* tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\2/p' "$BUILD/ctest.log")
nfail=$(sed -n 's/.* tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\1/p' "$BUILD/ctest.log")
if [ -z "$total" ]; then
	tail -n 40 "$BUILD/ctest.log"
	finish 0 1
fi
# a skipped test (GTEST_SKIP, reported by ctest as "(Skipped)") is not a passed one
sed -n 's/^[[:space:]]*[0-9]* - \(.*\) (Skipped)$/skipped: \1/p' "$BUILD/ctest.log"
nskip=$(grep -c ' (Skipped)$' "$BUILD/ctest.log")
finish $((total - nfail - nskip)) "$nfail" "$nskip"
