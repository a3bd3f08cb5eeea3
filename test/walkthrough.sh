#!/usr/bin/env bash
# The README, walked through as a newcomer would, using only what it says:
# install, configure for an S3 endpoint (the local S3 stack stands in for
# MinIO), run the migration (Phase 2 runbook), monitor it, recover from a
# wrong secret (Troubleshooting), and restore a backup (Backup and recovery).
# Ends with "N passed, N failed".
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/reportstore-walkthrough.XXXXXX")
chmod 755 "$WORK"
S3_PORT=${REPORTSTORE_WALK_S3_PORT:-}  # default: free ports
PG_PORT=${REPORTSTORE_WALK_PG_PORT:-$(/usr/bin/python3 test/harness/freeport.py 1)}
passed=0
failed=0
step() { printf '\n--- %s\n' "$*"; }
check() { # check DESCRIPTION COMMAND...
	if "${@:2}"; then passed=$((passed + 1)); echo "ok: $1"; else failed=$((failed + 1)); echo "FAILED: $1"; fi
}
cleanup() {
	test/pgcluster.sh stop "$WORK/pg" >/dev/null 2>&1
	bash test/harness/s3stack.sh stop "$WORK/s3" >/dev/null 2>&1
}
trap cleanup EXIT

step "Installation: make && make install"
check "extension builds and installs" bash -c 'make -s -j2 >/dev/null && make -s install >/dev/null'

step "An S3 endpoint (Ceph RGW, behind the signature-checking front) and a PostgreSQL server"
bash test/harness/s3stack.sh start "$WORK/s3" $S3_PORT >"$WORK/s3stack.log" 2>&1 ||
	{ cat "$WORK/s3stack.log"; echo "0 passed, 1 failed"; exit 1; }
set -a; . "$WORK/s3/s3.env"; set +a
# Configuration exactly as the README's Installation section says: preload,
# endpoint, database, and credentials in the server's environment.
S3_ENDPOINT='' test/pgcluster.sh start "$WORK/pg" "$PG_PORT" \
	"reportstore.endpoint = '$S3_ENDPOINT'" "reportstore.database = 'app'" >/dev/null
export PGHOST="$WORK/pg" PGPORT="$PG_PORT" PGUSER=postgres
q() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }
q -c "CREATE DATABASE app"
test/pgcluster.sh restart "$WORK/pg" >/dev/null # the worker's database exists now
export PGDATABASE=app
q -f test/fixtures/seed_schema_before.sql
q -f test/fixtures/sample_reports.sql
q -c "CREATE TABLE walkthrough_originals AS SELECT report_id, report_data FROM reports"

step "Phase 1: CREATE EXTENSION reportstore"
check "extension created, minio_path added" \
	bash -c 'psql -X -q -At -v ON_ERROR_STOP=1 -c "CREATE EXTENSION reportstore" &&
	         [ "$(psql -X -At -c "SELECT count(*) FROM pg_attribute WHERE attrelid = '\''reports'\''::regclass AND attname = '\''minio_path'\''")" = 1 ]'

step "Phase 2: keep_report_data first, enable the worker, watch reportstore.status"
q -c "ALTER SYSTEM SET reportstore.keep_report_data = on" -c "ALTER SYSTEM SET reportstore.worker_enabled = on" \
	-c "SELECT pg_reload_conf()" >/dev/null
wait_for() { # wait_for SQL EXPECTED SECONDS
	local i
	for i in $(seq 1 $(($3 * 10))); do
		[ "$(q -c "$1")" = "$2" ] && return 0
		sleep 0.1
	done
	echo "  (waited for: $1 = $2; got $(q -c "$1"))"
	return 1
}
check "status reaches 100 %" wait_for "SELECT percent_migrated FROM reportstore.status" "100.0" 60
check "report_data kept while keep_report_data is on" \
	wait_for "SELECT count(*) FROM reports WHERE report_data IS NULL" "0" 5
check "every report reads back identically" \
	wait_for "SELECT count(*) FROM reports r JOIN walkthrough_originals o USING (report_id) WHERE report_fetch(r.report_id) IS DISTINCT FROM o.report_data" "0" 5
q -c "ALTER SYSTEM SET reportstore.keep_report_data = off" -c "SELECT pg_reload_conf()" >/dev/null
check "release_kept_data() checks each object and clears report_data" \
	wait_for "SELECT reportstore.release_kept_data()" "12" 5
check "now every report reads back identically from the object store" \
	wait_for "SELECT count(*) FILTER (WHERE r.report_data IS NULL AND report_fetch(r.report_id) = o.report_data) FROM reports r JOIN walkthrough_originals o USING (report_id)" "12" 5
q -c "INSERT INTO reports (report_id, assessment_id, report_type, title, format, report_data, status, generated_at)
      VALUES ('00000000-0000-4000-8000-0000000000aa', 'a0000000-0000-4000-8000-000000000001', 'executive',
              'after roll-out', 'json', '{\"new\": true}', 'completed', now())"
check "a new report is offloaded automatically, report_data cleared" \
	wait_for "SELECT minio_path IS NOT NULL AND report_data IS NULL FROM reports WHERE title = 'after roll-out'" "t" 10

step "Monitoring"
check "worker state is idle, nothing failing" \
	wait_for "SELECT worker_state || ' ' || reports_failing FROM reportstore.status" "idle 0" 10
# reportstore.max_workers (default 2): as many workers as reportstore.status says, at least one
check "pg_stat_activity shows the workers" \
	wait_for "SELECT s.workers >= 1 AND s.workers = (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'reportstore worker' AND datname = 'app') FROM reportstore.status s" "t" 5

step "An operator role, created exactly as the SQL reference says"
# The README's own grant block (the sql block after "Grant them to an operator role").
awk '/Grant them to an operator role/ {f = 1} f && /^```sql/ {g = 1; next} g && /^```/ {exit} g' README.md >"$WORK/grants.sql"
check "the README's grants run" bash -c "[ -s '$WORK/grants.sql' ] && psql -X -q -v ON_ERROR_STOP=1 -f '$WORK/grants.sql'"
q -c "CREATE ROLE walk_operator LOGIN IN ROLE reportstore_admin"
as_operator() { psql -X -q -At -v ON_ERROR_STOP=1 -U walk_operator -c "$1" >"$WORK/operator.out" 2>&1 ||
	{ cat "$WORK/operator.out"; return 1; }; }
check "the operator reads reportstore.status" as_operator "SELECT percent_migrated FROM reportstore.status"
check "the operator runs verify()" as_operator "SELECT count(*) FROM reportstore.verify()"
check "the operator runs run_once()" as_operator "SELECT reportstore.run_once()"
check "the operator lists orphans()" as_operator "SELECT count(*) FROM reportstore.orphans()"
check "the operator reads phase3_report()" as_operator "SELECT count(*) FROM reportstore.phase3_report()"
check "the operator recalls a report and offloads it again" \
	bash -c 'psql -X -q -At -v ON_ERROR_STOP=1 -U walk_operator \
	           -c "SELECT reportstore.recall('"'"'00000000-0000-4000-8000-0000000000aa'"'"')" >/dev/null &&
	         [ "$(psql -X -At -c "SELECT report_data IS NOT NULL FROM reports WHERE report_id = '"'"'00000000-0000-4000-8000-0000000000aa'"'"'")" = t ] &&
	         psql -X -q -At -v ON_ERROR_STOP=1 -c "SELECT report_offload('"'"'00000000-0000-4000-8000-0000000000aa'"'"')" >/dev/null'
check "the operator is no superuser and cannot read the reports table" \
	bash -c '! psql -X -q -At -U walk_operator -c "SELECT count(*) FROM reports" >/dev/null 2>&1'

step "Troubleshooting: a wrong secret, then the fix"
q -c "ALTER SYSTEM SET reportstore.access_key_id = 'rstest-decoy-key'" \
	-c "ALTER SYSTEM SET reportstore.secret_access_key = 'a-wrong-secret'" -c "SELECT pg_reload_conf()" >/dev/null
q -c "INSERT INTO reports (report_id, assessment_id, report_type, title, format, report_data, status, generated_at)
      VALUES ('00000000-0000-4000-8000-0000000000bb', 'a0000000-0000-4000-8000-000000000001', 'executive',
              'during the outage', 'json', '{\"outage\": true}', 'completed', now())"
check "worker backs off and says why" \
	wait_for "SELECT worker_state || ' ' || (last_error LIKE '%SignatureDoesNotMatch%') FROM reportstore.status" "backing off true" 15
q -c "ALTER SYSTEM RESET reportstore.access_key_id" -c "ALTER SYSTEM RESET reportstore.secret_access_key" \
	-c "SELECT pg_reload_conf()" >/dev/null
check "after the fix the worker resumes and nothing was lost" \
	wait_for "SELECT reports_in_database || ' ' || reports_failing FROM reportstore.status" "0 0" 30

step "Backup and recovery: pg_dump, restore, verify"
chown postgres: "$WORK"
runuser -u postgres -- pg_dump -h "$PGHOST" -p "$PGPORT" -d app -f "$WORK/app.sql"
q -d postgres -c "CREATE DATABASE app_restored"
check "the dump restores without error" q -d app_restored -f "$WORK/app.sql"
restored_clean() { # in the restored database: offloaded reports, their objects recorded, verify() finds nothing
	local n
	n=$(q -d app_restored -c "SELECT count(*) FROM reports r JOIN reportstore.objects o USING (report_id) WHERE r.minio_path = o.path")
	echo "  restored database: $n offloaded reports with their recorded objects"
	[ "$n" -ge 12 ] &&
		[ "$(q -d app_restored -c "SELECT count(*) FROM reportstore.verify()")" = 0 ] &&
		[ "$(q -d app_restored -c "SELECT count(*) FROM reportstore.verify(true)")" = 0 ]
}
check "verify() after restore is clean (in the restored database)" restored_clean
check "restored reports read back identically" \
	bash -c 'psql -X -At -d app_restored -c "SELECT count(*) FROM reports r JOIN walkthrough_originals o USING (report_id) WHERE report_fetch(r.report_id) IS DISTINCT FROM o.report_data" | grep -qx 0'

step "Every request this walkthrough made was signed correctly"
check "the S3 front saw no unexpected signature failure" /usr/bin/python3 test/harness/check_signatures.py "$S3_CONTROL"

echo
echo "walkthrough: $passed passed, $failed failed"
((failed == 0))
