#!/usr/bin/env bash
# Sets everything up on a fresh Debian 12 machine (as root) and runs the demo:
# a throwaway PostgreSQL with reportstore preloaded and a local S3 server (Ceph
# RADOS Gateway, behind the suite's signature-checking front) on 127.0.0.1, the
# seed's schema with sample reports, every report offloaded, their minio_path
# shown and one report fetched back. Ports are free ones unless given
# (REPORTSTORE_DEMO_S3_PORT, REPORTSTORE_DEMO_PG_PORT).
#
#   bash scripts/demo.sh          # set up and run the demo (servers keep running)
#   bash scripts/demo.sh stop     # stop the demo's servers
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEMO=${REPORTSTORE_DEMO_DIR:-/tmp/reportstore-demo}
S3_PORT=${REPORTSTORE_DEMO_S3_PORT:-}
PG_PORT=${REPORTSTORE_DEMO_PG_PORT:-}
cd "$ROOT"

stop() {
	test/pgcluster.sh stop "$DEMO/pg" >/dev/null 2>&1 || true
	bash test/harness/s3stack.sh stop "$DEMO/s3" >/dev/null 2>&1 || true
}
if [ "${1:-}" = stop ]; then
	stop
	echo "demo stopped"
	exit 0
fi

bash scripts/install-deps.sh
echo "== build and install"
make -s -j2 >/dev/null
make -s install >/dev/null

stop
rm -rf "$DEMO"
mkdir -p "$DEMO"
chmod 755 "$DEMO"
[ -n "$PG_PORT" ] || PG_PORT=$(/usr/bin/python3 test/harness/freeport.py 1)
echo "== start a local S3 server (Ceph RGW) and PostgreSQL on port $PG_PORT"
# shellcheck disable=SC2086 # S3_PORT: empty (a free port) or one port
bash test/harness/s3stack.sh start "$DEMO/s3" $S3_PORT 2>"$DEMO/s3stack.log" >/dev/null ||
	{ cat "$DEMO/s3stack.log"; exit 1; }
set -a
. "$DEMO/s3/s3.env"
set +a
echo "S3 endpoint $S3_ENDPOINT (Ceph RGW $RGW_VERSION at $RGW_ENDPOINT, https $RGW_HTTPS_ENDPOINT)"
test/pgcluster.sh start "$DEMO/pg" "$PG_PORT" >/dev/null
export PGHOST="$DEMO/pg" PGPORT="$PG_PORT" PGUSER=postgres
psql() { command psql -X -v ON_ERROR_STOP=1 -q "$@"; }

echo "== create the seed's schema with sample reports, and the extension"
psql -c "CREATE DATABASE reportstore_demo"
# The worker runs in the demo database (a restart setting).
psql -c "ALTER SYSTEM SET reportstore.database = 'reportstore_demo'"
test/pgcluster.sh restart "$DEMO/pg"
export PGDATABASE=reportstore_demo
psql -f test/fixtures/seed_schema_before.sql
psql -f test/fixtures/sample_reports.sql
psql -c "CREATE TABLE demo_originals AS SELECT report_id, report_data FROM reports"
psql -c "CREATE EXTENSION reportstore"
psql -P pager=off -c "SELECT count(*) AS reports, pg_size_pretty(sum(pg_column_size(report_data))) AS report_data_size FROM reports"

echo "== the application offloads three reports itself: report_offload(report_id)"
psql -P pager=off -c "SELECT title, format, report_offload(report_id) AS minio_path
  FROM reports WHERE title IN ('Report 1', 'Report 2', 'Report 3') ORDER BY generated_at"

echo "== a DBA enables the background worker for the rest (Phase 2)"
psql -c "ALTER SYSTEM SET reportstore.worker_enabled = on" -c "SELECT pg_reload_conf()" >/dev/null
for _ in $(seq 1 60); do
	left=$(psql -At -c "SELECT reports_in_database FROM reportstore.status")
	[ "$left" = 0 ] && break
	sleep 0.5
done
psql -P pager=off -x -c "SELECT * FROM reportstore.status"

echo "== a new report is offloaded automatically when its transaction commits"
started=$(date +%s%N)
psql -c "INSERT INTO reports (report_id, assessment_id, report_type, title, format, report_data, status, generated_at)
         VALUES ('00000000-0000-4000-8000-000000000099', 'a0000000-0000-4000-8000-000000000001', 'executive',
                 'New report', 'json', '{\"summary\": \"generated just now\"}', 'completed', now())"
for _ in $(seq 1 20); do
	path=$(psql -At -c "SELECT minio_path FROM reports WHERE title = 'New report'")
	[ -n "$path" ] && break
	sleep 0.05
done
echo "new report at ${path:-(not yet offloaded)}, $(( ($(date +%s%N) - started) / 1000000 )) ms after the INSERT was sent"

echo "== the reports table now"
psql -P pager=off -c "SELECT report_id, format, minio_path, report_data IS NULL AS data_moved FROM reports ORDER BY generated_at"

echo "== one report fetched back from object storage"
psql -P pager=off -x -c "SELECT r.report_id, r.minio_path, f.report - 'findings' AS report,
       jsonb_array_length(f.report -> 'findings') AS findings, f.report -> 'findings' -> 0 AS first_finding
  FROM reports r, LATERAL (SELECT report_fetch(r.report_id) AS report) f
 WHERE r.report_id = '00000000-0000-4000-8000-000000000005'"
psql -P pager=off -c "SELECT count(*) AS reports_checked,
       count(*) FILTER (WHERE report_fetch(r.report_id) = o.report_data) AS identical_after_round_trip
  FROM reports r JOIN demo_originals o USING (report_id)"

cat <<MSG

Demo running. Explore it with:
    PGHOST=$PGHOST PGPORT=$PGPORT PGUSER=postgres psql reportstore_demo
    reportstore_demo=# SELECT * FROM reportstore.status \watch 2
Stop it with:
    bash scripts/demo.sh stop
MSG
