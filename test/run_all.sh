#!/usr/bin/env bash
# The whole test suite: unit tests (GoogleTest), pg_regress and integration
# tests, against a throwaway PostgreSQL cluster and a local S3 stack whose
# front verifies the SigV4 signature of every request. Installs what it needs.
#
#   bash test/run_all.sh
#
# Every stage fails when it ran nothing, when its runner failed without naming
# a failed test, or when a test was skipped that is not an expected skip
# (REPORTSTORE_EXPECTED_SKIPS, a regular expression on the test's name; skips are
# always listed). One Ceph RGW serves every stage that needs an S3 server; each
# stage has its own signature-checking front before it (its own statistics,
# faults and request log), and every front is checked for signature failures.
#
# Environment: REPORTSTORE_TEST_S3_PORT, REPORTSTORE_TEST_PG_PORT (default: free
# ports); REPORTSTORE_SKIP_STAGES="package ..." leaves stages out (reported as
# such; the Debian package stage installs system-wide); PG_CONFIG.
#
# Ends with the time each stage took and one summary line
# "reportstore tests: N passed, N failed".
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WORK=$(mktemp -d /tmp/reportstore-test.XXXXXX)
chmod 755 "$WORK"
# Every stage's temporary directories land here (TMPDIR), so that the secret scan
# at the end sees every log and output the suite wrote.
mkdir -m 1777 "$WORK/tmp"
export TMPDIR="$WORK/tmp" REPORTSTORE_KEEP_STACK_DIRS=1 CHAOS_KEEP=1 REPORTSTORE_KEEP_LOGS=1
# Secrets the tests make on the way (temporary credentials), for the secret scan.
export REPORTSTORE_SECRETS_FILE="$WORK/secrets.made"
: >"$REPORTSTORE_SECRETS_FILE"
# Ports: free ones, unless given (a taken port then fails with a message naming it).
S3_PORT=${REPORTSTORE_TEST_S3_PORT:-}
PG_PORT=${REPORTSTORE_TEST_PG_PORT:-}
# HttpEngine.ResolveFailure skips when this machine's DNS resolver does not answer
# (a timeout instead of "host not found").
EXPECTED_SKIPS=${REPORTSTORE_EXPECTED_SKIPS:-^HttpEngine\.ResolveFailure$}
SKIP_STAGES=" ${REPORTSTORE_SKIP_STAGES:-} "
passed=0
failed=0
failures=()
timings=()
left_out=()
bg_pids=()
STAGE=
STAGE_T0=$SECONDS
T0=$SECONDS

log() { printf '\n=== %s\n' "$*"; }
begin() { # begin STAGE TITLE: starts timing a stage
	STAGE=$1
	STAGE_T0=$SECONDS
	log "$2"
}
record() { # record STAGE PASSED FAILED [NOTE]: a stage that ran nothing fails
	local ok=$2 bad=$3 note=${4:-}
	if [ "$ok" -eq 0 ] && [ "$bad" -eq 0 ]; then
		bad=1
		note="${note:+$note; }ran nothing"
	fi
	passed=$((passed + ok))
	failed=$((failed + bad))
	if [ "$bad" -gt 0 ]; then failures+=("$1 ($bad failed${note:+: $note})"); fi
	echo "--- $1: $ok passed, $bad failed${note:+ ($note)}"
	if [ "$1" = "$STAGE" ]; then timings+=("$(printf '%-16s %5d s' "$1" $((SECONDS - STAGE_T0)))"); fi
}
wanted() { # wanted STAGE: false (and reported) when REPORTSTORE_SKIP_STAGES names it
	if [[ "$SKIP_STAGES" == *" $1 "* ]]; then
		echo "--- $1: left out (REPORTSTORE_SKIP_STAGES)"
		left_out+=("$1")
		return 1
	fi
}
finish() {
	echo
	echo "stage timings (wall clock):"
	printf '  %s\n' "${timings[@]}"
	printf '  %-16s %5d s\n' total $((SECONDS - T0))
	if ((${#left_out[@]})); then echo "left out on request: ${left_out[*]}"; fi
	if ((failed)); then echo "failures: ${failures[*]}"; fi
	echo "reportstore tests: $passed passed, $failed failed"
	((failed == 0))
	exit $?
}

cleanup() {
	local p
	for p in "${bg_pids[@]}"; do kill -- "-$p" 2>/dev/null; done
	test/pgcluster.sh stop "$WORK/pg" >/dev/null 2>&1
	bash test/harness/s3stack.sh stop "$WORK/s3" >/dev/null 2>&1
}
trap cleanup EXIT
trap 'exit 130' INT TERM

begin deps "dependencies"
if bash scripts/install-deps.sh; then record deps 1 0; else record deps 0 1 "scripts/install-deps.sh failed"; finish; fi

[ -n "$PG_PORT" ] || PG_PORT=$(/usr/bin/python3 test/harness/freeport.py 1)

begin build "build and install the extension (-Werror: a warning fails the build)"
if make -s -j2 >"$WORK/build.log" 2>&1 && make -s install >>"$WORK/build.log" 2>&1; then
	if grep -E "warning:" "$WORK/build.log"; then record build 0 1 "warnings"; else record build 1 0; fi
else
	cat "$WORK/build.log"
	record build 0 1
	finish
fi

# The C++ builds of the unit, fuzz and sanitizer stages and the Debian package run in the background, one
# after the other and niced, while pg_regress and the integration tests (mostly
# waiting on servers) run; those stages come after them. Each build writes
# $WORK/NAME.build.log and its exit status to $WORK/NAME.build.rc.
bg_pids=()
bg_builds() { # bg_builds NAME... (unit fuzz sanitize)
	# its own process group (setsid), so that an interrupted run can stop it whole
	(exec setsid bash -c '
		work=$1
		shift
		for name in "$@"; do
			case $name in
			unit) cmd=(bash -c "cmake -S . -B \"\$1\" -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build \"\$1\" -j2" _ "$work/core") ;;
			fuzz) cmd=(bash test/fuzz/run.sh --build-only "$work/fuzz") ;;
			sanitize) cmd=(env REPORTSTORE_SANITIZE_JOBS=2 bash test/sanitize.sh --build-only "$work/sanitize") ;;
			package) cmd=(bash test/package/run.sh --build-only "$work/package") ;;
			esac
			nice -n 10 "${cmd[@]}" >"$work/$name.build.log" 2>&1
			echo $? >"$work/$name.build.rc"
		done' _ "$WORK" "$@") &
	bg_pids+=("$!")
}
bg_built() { # bg_built STAGE LOG...: true when STAGE's build succeeded; else shows the logs and fails the stage
	local stage=$1
	shift
	bg_wait "$stage" && return 0
	tail -n 40 "$@"
	record "$stage" 0 1 "build failed"
	return 1
}
bg_wait() { # bg_wait NAME: waits for the build; true if it succeeded
	local t=$SECONDS
	while [ ! -s "$WORK/$1.build.rc" ]; do
		sleep 1
		if [ $((SECONDS - t)) -gt 1800 ]; then echo "the $1 build did not end within 30 min"; return 1; fi
	done
	echo "(waited $((SECONDS - t)) s for the $1 build)"
	[ "$(cat "$WORK/$1.build.rc")" = 0 ]
}
builds=()
for name in unit fuzz sanitize package; do
	[[ "$SKIP_STAGES" == *" $name "* ]] || builds+=("$name")
done
((${#builds[@]} == 0)) || bg_builds "${builds[@]}"

begin s3 "start the S3 stack (Ceph RGW behind the signature-checking front) and PostgreSQL"
if ! bash test/harness/s3stack.sh start "$WORK/s3" $S3_PORT; then
	record s3 0 1 "test/harness/s3stack.sh start failed"
	finish
fi
set -a
. "$WORK/s3/s3.env"
set +a
# The other stages' stacks use this RGW (each with a front of its own).
export S3_RGW_DIR="$WORK/s3/rgw"
if ! test/pgcluster.sh start "$WORK/pg" "$PG_PORT" >/dev/null; then
	cat "$WORK/pg/server.log" 2>/dev/null
	record s3 0 1 "PostgreSQL did not start"
	finish
fi
record s3 1 0
export PGHOST="$WORK/pg" PGPORT="$PG_PORT" PGUSER=postgres
# the unit tests' live S3 test (plain and under the sanitizers)
export REPORTSTORE_TEST_S3_ENDPOINT="$S3_ENDPOINT" REPORTSTORE_TEST_S3_ACCESS_KEY="$S3_ACCESS_KEY" \
	REPORTSTORE_TEST_S3_SECRET_KEY="$S3_SECRET_KEY" REPORTSTORE_TEST_S3_BUCKET="$S3_BUCKET" \
	REPORTSTORE_TEST_S3_REGION="$S3_REGION"

# Skipped tests, one name a line in FILE: the unexpected ones fail the stage.
# skips FILE -> prints the count of unexpected skips, lists them all on stderr
skips() {
	local name n=0
	while IFS= read -r name; do
		[ -n "$name" ] || continue
		if [[ "$name" =~ $EXPECTED_SKIPS ]]; then
			echo "  skipped (expected): $name" >&2
		else
			echo "  SKIPPED (unexpected): $name" >&2
			n=$((n + 1))
		fi
	done <"$1"
	echo "$n"
}

# ctest's counts from its log: ctest_counts LOG STAGE (a skipped test is not a passed one)
ctest_counts() {
	local log=$1 stage=$2 total nfail nskip bad
	total=$(sed -n 's/.* tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\2/p' "$log" | tail -1)
	nfail=$(sed -n 's/.* tests passed, \([0-9]*\) tests failed out of \([0-9]*\).*/\1/p' "$log" | tail -1)
	sed -n 's/^[[:space:]]*[0-9]* - \(.*\) (Skipped)$/\1/p' "$log" >"$log.skipped"
	nskip=$(wc -l <"$log.skipped")
	if [ -z "$total" ]; then
		record "$stage" 0 1 "no ctest summary"
		return
	fi
	bad=$(skips "$log.skipped")
	record "$stage" $((total - nfail - nskip)) $((nfail + bad)) "$nskip skipped, $bad of them unexpected"
}

# pytest through its JUnit report: run_pytest STAGE ARGS...
run_pytest() {
	local stage=$1 line ok bad unexpected allowed rc
	shift
	/usr/bin/python3 -m pytest -q -p no:cacheprovider -rfEs --junitxml="$WORK/$stage.xml" "$@" 2>&1 |
		tee "$WORK/$stage.log" | tail -n 30
	rc=${PIPESTATUS[0]}
	/usr/bin/python3 test/lib/junit_summary.py "$WORK/$stage.xml" "$EXPECTED_SKIPS" >"$WORK/$stage.summary"
	grep -v '^RESULT ' "$WORK/$stage.summary"
	read -r _ ok bad unexpected allowed < <(grep '^RESULT ' "$WORK/$stage.summary")
	if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then bad=1; fi # pytest failed without a failed test (collection, crash)
	record "$stage" "$ok" $((bad + unexpected)) "pytest exit $rc; $((unexpected + allowed)) skipped, $unexpected of them unexpected"
}

if wanted pg_regress; then
	begin pg_regress "pg_regress (make installcheck)"
	sched_bad=0
	bash test/check_schedule.sh || sched_bad=1
	rm -f regression.diffs regression.out
	make -s installcheck >"$WORK/regress.log" 2>&1
	rc=$?
	grep -E "\.\.\.|tests" "$WORK/regress.log" | tail -n 20
	n_ok=$(grep -cE "\.\.\. ok" "$WORK/regress.log")
	n_bad=$(grep -cE "\.\.\. FAILED|\.\.\. failed" "$WORK/regress.log")
	n_want=$(grep -cE '^test: ' test/schedule)
	note="make installcheck exit $rc; $((n_ok + n_bad)) of $n_want scheduled tests ran"
	if [ -f regression.diffs ]; then
		head -n 150 regression.diffs
		[ "$n_bad" -gt 0 ] || n_bad=1
	fi
	# make failed without a failed test (no server, pg_regress missing ...), or tests did not run
	if [ "$rc" -ne 0 ] && [ "$n_bad" -eq 0 ]; then tail -n 20 "$WORK/regress.log"; n_bad=1; fi
	if [ $((n_ok + n_bad)) -lt "$n_want" ]; then n_bad=$((n_want - n_ok)); fi
	[ "$sched_bad" = 0 ] || { n_bad=$((n_bad + 1)); note="$note; test/check_schedule.sh failed"; }
	record pg_regress "$n_ok" "$n_bad" "$note"
fi

if wanted harness; then
	begin harness "the S3 test harness's own tests (s3front.py, test_s3front.py; a front of their own)"
	run_pytest harness test/harness/test_s3front.py
fi

# The modules whose tests run on clusters of their own (workers, credentials) run in a
# second pytest process beside the others, with an S3 front and a bucket of their own
# (on the same RGW), so that neither sees the other's injected faults or objects. They
# spend most of their time waiting for workers, timeouts and expiries.
OWN_CLUSTER_MODULES=(test/integration/test_worker.py test/integration/test_workers.py
	test/integration/test_credentials.py)
if wanted integration; then
	begin integration "integration tests (pytest; ${OWN_CLUSTER_MODULES[*]##*/} in a second process)"
	own_port=$(/usr/bin/python3 test/harness/freeport.py 1)
	if S3_STACK_BUCKET=reports-own bash test/harness/s3stack.sh start "$WORK/s3own" "$own_port" >"$WORK/s3own.log" 2>&1; then
		(
			set -a
			. "$WORK/s3own/s3.env"
			set +a
			/usr/bin/python3 -m pytest -q -p no:cacheprovider -rfEs --junitxml="$WORK/integration-own.xml" \
				"${OWN_CLUSTER_MODULES[@]}" >"$WORK/integration-own.log" 2>&1
			echo $? >"$WORK/integration-own.rc"
			/usr/bin/python3 test/harness/check_signatures.py "$S3_CONTROL" >"$WORK/integration-own.signatures" 2>&1
			echo $? >>"$WORK/integration-own.rc"
		) &
		own_pid=$!
	else
		cat "$WORK/s3own.log"
		own_pid=
	fi
	ignores=()
	for m in "${OWN_CLUSTER_MODULES[@]}"; do ignores+=(--ignore="$m"); done
	run_pytest integration test/integration "${ignores[@]}"
	begin integration_own "integration tests with clusters of their own (the second process)"
	if [ -n "$own_pid" ]; then
		wait "$own_pid"
		tail -n 30 "$WORK/integration-own.log"
		/usr/bin/python3 test/lib/junit_summary.py "$WORK/integration-own.xml" "$EXPECTED_SKIPS" >"$WORK/integration-own.summary"
		grep -v '^RESULT ' "$WORK/integration-own.summary"
		read -r _ ok bad unexpected allowed < <(grep '^RESULT ' "$WORK/integration-own.summary")
		mapfile -t own_rc <"$WORK/integration-own.rc"
		cat "$WORK/integration-own.signatures"
		if [ "${own_rc[0]}" -ne 0 ] && [ "$bad" -eq 0 ]; then bad=1; fi
		if [ "${own_rc[1]:-1}" -ne 0 ]; then bad=$((bad + 1)); fi # a request its front could not verify
		record integration_own "$ok" $((bad + unexpected)) \
			"pytest exit ${own_rc[0]}; signatures exit ${own_rc[1]:-?}; $((unexpected + allowed)) skipped, $unexpected of them unexpected"
		bash test/harness/s3stack.sh stop "$WORK/s3own" >/dev/null 2>&1
	else
		record integration_own 0 1 "its S3 front did not start"
	fi
fi

# Scripts that end with "N passed, N failed[, N skipped]" and list skipped tests
# as "skipped: NAME": run_script STAGE COMMAND...
run_script() {
	local stage=$1 rc line ok bad unexpected
	shift
	"$@" >"$WORK/$stage.log" 2>&1
	rc=$?
	tail -n 25 "$WORK/$stage.log"
	line=$(grep -E "[0-9]+ passed, [0-9]+ failed" "$WORK/$stage.log" | tail -1)
	ok=$(echo "$line" | sed -n 's/.*\b\([0-9][0-9]*\) passed.*/\1/p')
	bad=$(echo "$line" | sed -n 's/.* \([0-9][0-9]*\) failed.*/\1/p')
	[ -n "$ok" ] || ok=0
	[ -n "$bad" ] || bad=0
	sed -n 's/^skipped: //p' "$WORK/$stage.log" >"$WORK/$stage.skipped"
	unexpected=$(skips "$WORK/$stage.skipped")
	if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then bad=1; fi
	record "$stage" "$ok" $((bad + unexpected)) "exit $rc; $(wc -l <"$WORK/$stage.skipped") skipped, $unexpected of them unexpected"
}

if wanted unit; then
	begin unit "unit tests (ctest)"
	if bg_built unit "$WORK/unit.build.log"; then
		ctest --test-dir "$WORK/core" --output-on-failure -j2 >"$WORK/ctest.log" 2>&1
		tail -n 15 "$WORK/ctest.log"
		ctest_counts "$WORK/ctest.log" unit
	fi
fi

if wanted fuzz; then
	begin fuzz "fuzzing the parsers (libFuzzer + ASan/UBSan, 10 s per target after replaying the corpus)"
	if bg_built fuzz "$WORK/fuzz.build.log"; then
		run_script fuzz bash test/fuzz/run.sh --run-only "$WORK/fuzz" 10
	fi
fi

if wanted walkthrough; then
	begin walkthrough "README walkthrough (install, configure, migrate, monitor, wrong secret, restore)"
	run_script walkthrough bash test/walkthrough.sh
fi

if wanted chaos; then
	begin chaos "chaos: faults, kills and restarts under a concurrent workload (bounded CI run)"
	run_script chaos bash test/chaos/run.sh --ci
fi

if wanted bench; then
	begin bench "benchmark smoke run (the harness works and its figures are sane; no timing asserts)"
	run_script bench bash bench/run.sh --smoke
fi

if wanted sanitize; then
	begin sanitize "unit tests under AddressSanitizer and UndefinedBehaviorSanitizer"
	if bg_built sanitize "$WORK/sanitize.build.log"; then
		run_script sanitize bash test/sanitize.sh --test-only "$WORK/sanitize"
	fi
fi

if wanted package; then
	begin package "Debian package: build, install into a clean cluster"
	if bg_built package "$WORK/package/build.log" "$WORK/package.build.log"; then
		run_script package bash test/package/run.sh --prebuilt "$WORK/package"
	fi
fi

begin signatures "every request signed correctly (this stack's front; the other stages check their own)"
if /usr/bin/python3 test/harness/check_signatures.py "$S3_CONTROL"; then record signatures 1 0; else record signatures 0 1; fi

begin secrets "no credential in any log or output"
test/pgcluster.sh stop "$WORK/pg" >/dev/null 2>&1
# The secrets of the stacks still running (every stage's stack used this one's
# RGW and keys; a stopped stack's env files are gone) and those the tests made
# (temporary credentials), looked for in everything the suite wrote. The env
# files are the only places allowed to hold them.
find "$WORK" \( -name s3.env -o -name rgw.env \) -type f >"$WORK/env-files"
# Also allowed: the web identity token files test_credentials.py mounts (as Kubernetes
# would), and the copy of this source tree the package stage built from (the harness's
# fixed test keys are in its scripts).
{
	cat "$WORK/env-files"
	find "$WORK" -path '*/cred-cluster.*/token' -type f
} >"$WORK/allowed-files"
cp "$REPORTSTORE_SECRETS_FILE" "$WORK/secrets"
while IFS= read -r f; do
	/usr/bin/python3 -c 'import sys; sys.path.insert(0, "test/lib"); import rstest
for k, v in rstest.read_env_file(sys.argv[1]).items():
    if ("SECRET" in k or "TOKEN" in k) and len(v) >= 8:
        print(v)' "$f" >>"$WORK/secrets"
done <"$WORK/env-files"
echo "$S3_SECRET_KEY" >>"$WORK/secrets"
sort -u -o "$WORK/secrets" "$WORK/secrets"
echo "$(wc -l <"$WORK/env-files") stack env files, $(wc -l <"$REPORTSTORE_SECRETS_FILE") secrets made by tests," \
	"$(wc -l <"$WORK/secrets") distinct secrets, looked for in $WORK, regression.diffs, results/"
# (grep's own exit status is not used: an unreadable file must not pass the check)
grep -rlF -f "$WORK/secrets" "$WORK" regression.diffs results 2>/dev/null |
	grep -vxF -f "$WORK/allowed-files" | grep -vxF -e "$WORK/secrets" -e "$REPORTSTORE_SECRETS_FILE" |
	grep -v "^$WORK/package/reportstore/" >"$WORK/secrets.found"
if [ -s "$WORK/secrets.found" ]; then
	echo "secrets found in:"
	cat "$WORK/secrets.found"
	record secrets 0 1
else
	record secrets 1 0
fi

finish
