#!/usr/bin/env bash
# Chaos test: a concurrent workload (inserts, updates, deletes, fetches,
# report_offload, recall, run_once) against its own PostgreSQL cluster with the
# worker enabled and its own S3 stack, while S3 faults (500, 503, 403, reset,
# stall, delay, truncate, wrong ETag, corrupt body), SIGKILLs of the worker and
# of backends, immediate PostgreSQL restarts and S3 stack restarts happen at
# random (the S3 restart restarts radosgw; the objects stay in Ceph's OSD).
# Two workers run (reportstore.max_workers = 2). After the chaos, the S3 endpoint
# goes silent (every request stalls) for a few seconds while the workload goes
# on: no report may be charged an attempt for it, and the workers must offload
# every pending report by themselves afterwards. The full run also keeps one
# report whose text form is over 1 GB (too large to offload) from the start.
# No report may be lost or corrupted.
#
#   bash test/chaos/run.sh          # full: 240 s of chaos (CHAOS_DURATION=...)
#   bash test/chaos/run.sh --ci     # bounded: at most 2 minutes in all
#
# Environment: CHAOS_S3_PORT, CHAOS_PG_PORT (default: free ports), CHAOS_SEED
# (replay a run), CHAOS_S3_BACKEND (rgw, the default: an S3 restart restarts
# radosgw; s3rver: the whole stack restarts, objects kept on disk; moto loses
# them), CHAOS_KEEP=1 keeps the work directory.
# Expects the extension built and installed (make && make install).
# Ends with "N passed, N failed"; exit status 0 only if nothing failed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
CI=0
ARGS=()
for a in "$@"; do
	case "$a" in
	--ci) CI=1; ARGS+=(--ci) ;;
	*) ARGS+=("$a") ;;
	esac
done

if ! /usr/bin/python3 -c 'import psycopg2, boto3' 2>/dev/null; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-psycopg2 python3-boto3 >/dev/null ||
		{ echo "chaos: python3-psycopg2 / python3-boto3 missing"; echo "0 passed, 1 failed"; exit 1; }
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/reportstore-chaos.XXXXXX")
chmod 755 "$WORK"
PY_PID=
cleanup() {
	local rc=$?
	if [ -n "$PY_PID" ] && kill -0 "$PY_PID" 2>/dev/null; then
		kill -TERM "$PY_PID" 2>/dev/null
		for _ in $(seq 1 100); do kill -0 "$PY_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$PY_PID" 2>/dev/null
	fi
	test/pgcluster.sh stop "$WORK/pg" >/dev/null 2>&1
	bash test/harness/s3stack.sh stop "$WORK/s3" >/dev/null 2>&1
	if [ "${CHAOS_KEEP:-0}" = 1 ] || [ "$rc" != 0 ]; then
		echo "chaos: logs kept in $WORK (server.log in $WORK/pg, s3front.log in $WORK/s3)"
		rm -rf "$WORK/pg/data"
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$CI" = 1 ]; then
	# the whole run, checks included, stays within 2 minutes
	timeout --signal=TERM --kill-after=5 115 /usr/bin/python3 -u test/chaos/chaos.py "$WORK" "${ARGS[@]}" &
else
	/usr/bin/python3 -u test/chaos/chaos.py "$WORK" "${ARGS[@]}" &
fi
PY_PID=$!
wait "$PY_PID"
rc=$?
PY_PID=
if [ "$rc" = 124 ]; then
	echo "chaos: time limit exceeded"
elif [ "$rc" = 137 ]; then
	echo "chaos: time limit exceeded, killed"
	echo "0 passed, 1 failed"
fi
exit "$rc"
