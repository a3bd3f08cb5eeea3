#!/usr/bin/env bash
# Builds the libFuzzer targets of test/fuzz against the core sources (clang,
# -fsanitize=fuzzer,address,undefined) and runs each for a fixed time on a
# copy of its seed corpus. The committed corpus is never modified: inputs
# found during the run stay in a temporary directory, crashing inputs are
# copied to $REPORTSTORE_FUZZ_ARTIFACTS (default: the temporary directory,
# kept when something failed).
#
#   bash test/fuzz/run.sh [seconds-per-target]      (default 30)
#   REPORTSTORE_FUZZ_JOBS=1 bash test/fuzz/run.sh   targets in parallel (default: nproc)
#   bash test/fuzz/run.sh 0                         build and replay the corpus only
#   bash test/fuzz/run.sh --build-only DIR          build into DIR only (test/run_all.sh, in the background)
#   bash test/fuzz/run.sh --run-only DIR [seconds]  run the targets built there
#
# Reproduce a crash: <workdir>/bin/fuzz_x <crash-file>
# Ends with one summary line "N passed, N failed" (one per target; a build
# failure counts as a failed target). Exit status 0 only if nothing failed.
set -uo pipefail

PHASES=all
case "${1:-}" in
--build-only) PHASES=build; WORK=${2:?--build-only DIR}; shift 2 ;;
--run-only) PHASES=run; WORK=${2:?--run-only DIR}; shift 2 ;;
*) WORK=$(mktemp -d "${TMPDIR:-/tmp}/reportstore-fuzz.XXXXXX") ;;
esac
SECONDS_PER_TARGET=${1:-30}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
FUZZ="$ROOT/test/fuzz"
TARGETS=(fuzz_s3_xml fuzz_http_headers fuzz_uri fuzz_decompress fuzz_credentials)
JOBS=${REPORTSTORE_FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
ARTIFACTS=${REPORTSTORE_FUZZ_ARTIFACTS:-$WORK/artifacts}
mkdir -p "$WORK/obj" "$WORK/bin" "$ARTIFACTS"
passed=0
failed=0

summary() {
	echo "$passed passed, $failed failed"
	if ((failed)); then
		echo "work directory kept: $WORK" >&2
		exit 1
	fi
	rm -rf "$WORK"
	exit 0
}

if [ "$PHASES" != run ]; then
# --- toolchain ---------------------------------------------------------------
CXX=${CXX_FUZZ:-}
if [ -z "$CXX" ]; then
	for c in clang++-14 clang++; do
		if command -v "$c" >/dev/null 2>&1; then CXX=$c; break; fi
	done
fi
have_fuzzer_rt() {
	[ -n "$CXX" ] && echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char *, unsigned long) { return 0; }' |
		"$CXX" -x c++ -fsanitize=fuzzer,address,undefined -o "$WORK/probe" - >/dev/null 2>&1
}
if ! have_fuzzer_rt; then
	echo "installing clang-14 (libFuzzer runtime)..."
	export DEBIAN_FRONTEND=noninteractive
	if ! { apt-get install -y -q clang-14 libclang-rt-14-dev llvm-14 >"$WORK/apt.log" 2>&1 ||
		{ apt-get update -q >>"$WORK/apt.log" 2>&1 &&
			apt-get install -y -q clang-14 libclang-rt-14-dev llvm-14 >>"$WORK/apt.log" 2>&1; }; }; then
		tail -n 20 "$WORK/apt.log"
	fi
	CXX=clang++-14
	if ! have_fuzzer_rt; then
		echo "no clang with the libFuzzer runtime available" >&2
		failed=${#TARGETS[@]}
		summary
	fi
fi
for p in libcurl libxml-2.0 libzstd zlib openssl; do
	if ! pkg-config --exists "$p"; then
		echo "missing development package for $p (scripts/install-deps.sh installs it)" >&2
		failed=${#TARGETS[@]}
		summary
	fi
done
if command -v llvm-symbolizer-14 >/dev/null 2>&1 && ! command -v llvm-symbolizer >/dev/null 2>&1; then
	export ASAN_SYMBOLIZER_PATH=$(command -v llvm-symbolizer-14)
fi

# --- build -------------------------------------------------------------------
# The core is compiled once with coverage instrumentation and the sanitizers,
# then linked into each target. UBSan findings abort (no recovery).
SAN=(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
CXXFLAGS=(-std=c++17 -g -O1 -Wall -Wextra "${SAN[@]}" -I"$ROOT/src" $(pkg-config --cflags libxml-2.0 libcurl libzstd))
LIBS=($(pkg-config --libs libcurl libxml-2.0 libzstd zlib openssl) -lcurl -lxml2 -lssl -lcrypto -lz -lzstd)
echo "building with $CXX ($("$CXX" --version | head -n 1))"
t0=$(date +%s)
build_failed=0
# Objects are named after their path below src/core (s3/xml.cpp -> s3_xml.o)
# so that files of the same name in two folders do not collide.
find "$ROOT/src/core" -name '*.cpp' | sort | xargs -P "$JOBS" -I{} sh -c \
	'src="{}"; obj=$(printf %s "${src#'"$ROOT"'/src/core/}" | tr / _); "$0" "$@" -fsanitize=fuzzer-no-link -c "$src" -o "'"$WORK"'/obj/${obj%.cpp}.o" 2>>"'"$WORK"'/build.log"' \
	"$CXX" "${CXXFLAGS[@]}" || build_failed=1
if ((build_failed)); then
	cat "$WORK/build.log"
	echo "could not build the core" >&2
	failed=${#TARGETS[@]}
	summary
fi
printf '%s\n' "${TARGETS[@]}" | xargs -P "$JOBS" -I{} sh -c \
	'"$0" "$@" -fsanitize=fuzzer "'"$FUZZ"'/{}.cpp" "'"$WORK"'"/obj/*.o '"${LIBS[*]}"' -o "'"$WORK"'/bin/{}" 2>>"'"$WORK"'/build.log" || echo "build of {} failed" >>"'"$WORK"'/build.log"' \
	"$CXX" "${CXXFLAGS[@]}"
echo "built in $(($(date +%s) - t0)) s"

fi
[ "$PHASES" != build ] || exit 0

# --- run ---------------------------------------------------------------------
run_target() { # run_target NAME -> writes $WORK/NAME.status ("ok" or "fail") and $WORK/NAME.log
	local t=$1 corpus="$WORK/corpus/$1" extra=()
	mkdir -p "$corpus" "$ARTIFACTS/$t"
	cp -r "$FUZZ/corpus/$t/." "$corpus/" 2>/dev/null
	# Decompression must stay within its bound: with max_output <= 64 KiB the
	# output takes at most 128 KiB and zstd's window at most 8 MiB, so any
	# single allocation over 16 MiB is a failure (a bomb got through).
	[ "$t" = fuzz_decompress ] && extra+=(-malloc_limit_mb=16)
	if [ ! -x "$WORK/bin/$t" ]; then
		echo "fail" >"$WORK/$t.status"
		return
	fi
	if [ "$SECONDS_PER_TARGET" -gt 0 ]; then
		# New inputs go to $corpus (the copy); seeds are read from it too.
		"$WORK/bin/$t" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
			-print_final_stats=1 -artifact_prefix="$ARTIFACTS/$t/" "${extra[@]}" "$corpus" >"$WORK/$t.log" 2>&1
	else
		"$WORK/bin/$t" -runs=0 -timeout=10 -artifact_prefix="$ARTIFACTS/$t/" "${extra[@]}" "$corpus" >"$WORK/$t.log" 2>&1
	fi
	if [ $? -eq 0 ]; then echo ok >"$WORK/$t.status"; else echo fail >"$WORK/$t.status"; fi
}
export -f run_target
export WORK FUZZ ARTIFACTS SECONDS_PER_TARGET ASAN_SYMBOLIZER_PATH
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=0
echo "running ${#TARGETS[@]} targets for ${SECONDS_PER_TARGET} s each, $JOBS at a time"
t0=$(date +%s)
printf '%s\n' "${TARGETS[@]}" | xargs -P "$JOBS" -I{} bash -c 'run_target "$1"' _ {}
echo "ran in $(($(date +%s) - t0)) s"

for t in "${TARGETS[@]}"; do
	status=$(cat "$WORK/$t.status" 2>/dev/null || echo fail)
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$WORK/$t.log" 2>/dev/null | tail -n 1)
	cov=$(grep -oE 'cov: [0-9]+' "$WORK/$t.log" 2>/dev/null | tail -n 1)
	seeds=$(find "$FUZZ/corpus/$t" -type f | wc -l)
	grown=$(find "$WORK/corpus/$t" -type f 2>/dev/null | wc -l)
	if [ "$status" = ok ]; then
		passed=$((passed + 1))
		echo "PASS $t: ${execs:-?} executions, ${cov:-cov: ?}, corpus $seeds -> $grown"
	else
		failed=$((failed + 1))
		echo "FAIL $t"
		if [ -f "$WORK/$t.log" ]; then
			grep -E "ERROR|SUMMARY|property violated|runtime error|Test unit written|==[0-9]+==" "$WORK/$t.log" | head -n 20
			tail -n 40 "$WORK/$t.log" | sed 's/^/    /'
		else
			grep -A20 "$t" "$WORK/build.log" | head -n 40
		fi
		echo "    crashing inputs: $ARTIFACTS/$t/ (reproduce: $WORK/bin/$t <file>)"
	fi
done
summary
