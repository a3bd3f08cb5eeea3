#!/usr/bin/env bash
# The whole test suite: unit tests (GoogleTest), pg_regress and integration
# tests, against a throwaway PostgreSQL cluster and a local S3 stack whose
# front verifies the SigV4 signature of every request. Installs what it needs.
#
#   bash test/run_all.sh
#
# Ends with one summary line "reportstore tests: N passed, N failed".
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WORK=$(mktemp -d /tmp/reportstore-test.XXXXXX)
chmod 755 "$WORK"
# Ports: free ones, unless given (a taken port then fails with a message naming it).
S3_PORT=${REPORTSTORE_TEST_S3_PORT:-}
PG_PORT=${REPORTSTORE_TEST_PG_PORT:-}
passed=0
failed=0
failures=()

log() { printf '\n=== %s\n' "$*"; }
record() { # record STAGE PASSED FAILED
	passed=$((passed + $2))
	failed=$((failed + $3))
	if [ "$3" -gt 0 ]; then failures+=("$1 ($3 failed)"); fi
	echo "--- $1: $2 passed, $3 failed"
}

cleanup() {
	test/pgcluster.sh stop "$WORK/pg" >/dev/null 2>&1
	bash test/harness/s3stack.sh stop "$WORK/s3" >/dev/null 2>&1
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "dependencies"
bash scripts/install-deps.sh || { echo "reportstore tests: 0 passed, 1 failed"; exit 1; }

[ -n "$PG_PORT" ] || PG_PORT=$(/usr/bin/python3 test/harness/freeport.py 1)

log "build and install the extension"
if make -s -j2 >"$WORK/build.log" 2>&1 && make -s install >>"$WORK/build.log" 2>&1; then
	if grep -E "warning:" "$WORK/build.log"; then record "build warnings" 0 1; else record build 1 0; fi
else
	cat "$WORK/build.log"
	record build 0 1
	echo "reportstore tests: $passed passed, $failed failed"
	exit 1
fi

log "start the S3 stack (Ceph RGW behind the signature-checking front) and PostgreSQL"
s3_started=$SECONDS
if ! bash test/harness/s3stack.sh start "$WORK/s3" $S3_PORT; then
	record "s3 stack" 0 1
	echo "reportstore tests: $passed passed, $failed failed"
	exit 1
fi
echo "S3 stack up in $((SECONDS - s3_started)) s"
set -a
. "$WORK/s3/s3.env"
set +a
if ! test/pgcluster.sh start "$WORK/pg" "$PG_PORT" >/dev/null; then
	cat "$WORK/pg/server.log" 2>/dev/null
	record "postgres" 0 1
	echo "reportstore tests: $passed passed, $failed failed"
	exit 1
fi
export PGHOST="$WORK/pg" PGPORT="$PG_PORT" PGUSER=postgres

log "unit tests (ctest)"
export REPORTSTORE_TEST_S3_ENDPOINT="$S3_ENDPOINT" REPORTSTORE_TEST_S3_ACCESS_KEY="$S3_ACCESS_KEY" \
	REPORTSTORE_TEST_S3_SECRET_KEY="$S3_SECRET_KEY" REPORTSTORE_TEST_S3_BUCKET="$S3_BUCKET" \
	REPORTSTORE_TEST_S3_REGION="$S3_REGION"
if cmake -S . -B "$WORK/core" -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$WORK/cmake.log" 2>&1 &&
	cmake --build "$WORK/core" -j2 >>"$WORK/cmake.log" 2>&1; then
	ctest --test-dir "$WORK/core" --output-on-failure -j2 2>&1 | tee "$WORK/ctest.log" | tail -n 15
	total=$(sed -n 's/.* tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\2/p' "$WORK/ctest.log")
	nfail=$(sed -n 's/.* tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\1/p' "$WORK/ctest.log")
	record "unit" $((${total:-0} - ${nfail:-0})) "${nfail:-1}"
else
	tail -n 40 "$WORK/cmake.log"
	record "unit build" 0 1
fi

log "pg_regress (make installcheck)"
bash test/check_schedule.sh || record "schedule check" 0 1
make -s installcheck >"$WORK/regress.log" 2>&1
grep -E "\.\.\.|tests" "$WORK/regress.log" | tail -n 20
n_ok=$(grep -cE "\.\.\. ok" "$WORK/regress.log")
n_bad=$(grep -cE "\.\.\. FAILED|\.\.\. failed" "$WORK/regress.log")
if [ -f regression.diffs ]; then
	head -n 150 regression.diffs
	[ "$n_bad" -gt 0 ] || n_bad=1
fi
record "pg_regress" "$n_ok" "$n_bad"

log "the S3 test harness's own tests (s3front.py against its own RGW, test_s3front.py)"
/usr/bin/python3 -m pytest -q -p no:cacheprovider test/harness/test_s3front.py 2>&1 | tee "$WORK/harness.log" | tail -n 15
h_ok=$(grep -oE "[0-9]+ passed" "$WORK/harness.log" | tail -1 | grep -oE "[0-9]+")
h_bad=$(grep -E "(passed|failed|error)" "$WORK/harness.log" | tail -1 | grep -oE "[0-9]+ (failed|errors?)" | awk '{s += $1} END {print s + 0}')
[ -n "$h_ok" ] || h_ok=0
if [ "$h_ok" = 0 ] && [ "$h_bad" = 0 ]; then h_bad=1; fi
record "harness" "$h_ok" "$h_bad"

log "integration tests (pytest)"
# test_credentials.py lists there the temporary secrets and tokens it met (see the last stage).
export REPORTSTORE_TEST_SECRETS_FILE="$WORK/secrets.list"
/usr/bin/python3 -m pytest -q -p no:cacheprovider test/integration 2>&1 | tee "$WORK/pytest.log" | tail -n 30
p_ok=$(grep -oE "[0-9]+ passed" "$WORK/pytest.log" | tail -1 | grep -oE "[0-9]+")
p_bad=$(grep -E "(passed|failed|error)" "$WORK/pytest.log" | tail -1 | grep -oE "[0-9]+ (failed|errors?)" | awk '{s += $1} END {print s + 0}')
[ -n "$p_ok" ] || p_ok=0
[ -n "$p_bad" ] || p_bad=0
if [ "$p_ok" = 0 ] && [ "$p_bad" = 0 ]; then p_bad=1; fi
record "integration" "$p_ok" "$p_bad"

# Scripts that end with "N passed, N failed": run_script STAGE COMMAND...
run_script() {
	local stage=$1
	shift
	"$@" >"$WORK/$stage.log" 2>&1
	local rc=$?
	tail -n 25 "$WORK/$stage.log"
	local line ok bad
	line=$(grep -E "[0-9]+ passed, [0-9]+ failed" "$WORK/$stage.log" | tail -1)
	ok=$(echo "$line" | sed -n 's/.*\b\([0-9][0-9]*\) passed.*/\1/p')
	bad=$(echo "$line" | sed -n 's/.* \([0-9][0-9]*\) failed.*/\1/p')
	[ -n "$ok" ] || ok=0
	[ -n "$bad" ] || bad=0
	if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then bad=1; fi
	if [ "$ok" -eq 0 ] && [ "$bad" -eq 0 ]; then bad=1; fi
	record "$stage" "$ok" "$bad"
}

log "fuzzing the parsers (libFuzzer + ASan/UBSan, 20 s per target)"
run_script fuzz bash test/fuzz/run.sh 20

log "unit tests under AddressSanitizer and UndefinedBehaviorSanitizer"
run_script sanitize bash test/sanitize.sh

log "README walkthrough (install, configure, migrate, monitor, wrong secret, restore)"
run_script walkthrough bash test/walkthrough.sh

log "chaos: faults, kills and restarts under a concurrent workload (bounded CI run)"
run_script chaos bash test/chaos/run.sh --ci

log "benchmark smoke run (the harness works and its figures are sane; no timing asserts)"
run_script bench bash bench/run.sh --smoke

log "Debian package: build, install into a clean cluster"
run_script package bash test/package/run.sh

log "every request signed correctly"
if /usr/bin/python3 test/harness/check_signatures.py "$S3_CONTROL"; then record "signatures" 1 0; else record "signatures" 0 1; fi

log "no credential in any log or output"
test/pgcluster.sh stop "$WORK/pg" >/dev/null 2>&1
secrets=(-e "$S3_SECRET_KEY") # and the temporary secrets, session tokens and web identity tokens of the tests
if [ -s "$WORK/secrets.list" ]; then
	while IFS= read -r s; do [ -n "$s" ] && secrets+=(-e "$s"); done <"$WORK/secrets.list"
fi
echo "looking for $((${#secrets[@]} / 2)) secrets"
if grep -rlF "${secrets[@]}" "$WORK" regression.diffs results 2>/dev/null | grep -vE "/s3/s3.env$|/s3/rgw/rgw.env$|/secrets.list$"; then
	record "secrets in output" 0 1
else
	record "secrets in output" 1 0
fi

echo
if ((failed)); then echo "failures: ${failures[*]}"; fi
echo "reportstore tests: $passed passed, $failed failed"
((failed == 0))
