#!/usr/bin/env bash
# Throwaway PostgreSQL 15 cluster for tests and the demo, run as the postgres
# OS user with a private port and Unix socket directory.
#
#   test/pgcluster.sh start DIR PORT [extra postgresql.conf lines...]
#   test/pgcluster.sh restart DIR      (e.g. after make install: the library is preloaded)
#   test/pgcluster.sh stop DIR
#
# S3 settings come from the environment at start: S3_ENDPOINT, S3_BUCKET,
# S3_REGION, and the credentials S3_ACCESS_KEY / S3_SECRET_KEY, which are
# passed to the postmaster as AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY so they
# never appear in postgresql.conf.
set -euo pipefail

PGBIN=${PGBIN:-$("${PG_CONFIG:-pg_config}" --bindir)}
cmd=${1:?start|stop}
dir=${2:?directory}

as_postgres() {
	if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}

case "$cmd" in
start)
	port=${3:?port}
	shift 3
	mkdir -p "$dir"
	chown postgres: "$dir"
	as_postgres "$PGBIN/initdb" -D "$dir/data" -U postgres -A trust --no-sync -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log"
	cat >>"$dir/data/postgresql.conf" <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$dir'
shared_preload_libraries = 'reportstore'
fsync = off
log_line_prefix = '%m [%p] %q%a '
log_min_messages = info
reportstore.endpoint = '${S3_ENDPOINT:-}'
reportstore.bucket = '${S3_BUCKET:-reports}'
reportstore.region = '${S3_REGION:-us-east-1}'
CONF
	for line in "$@"; do echo "$line" >>"$dir/data/postgresql.conf"; done
	"$0" launch "$dir"
	echo "PGHOST=$dir PGPORT=$port PGUSER=postgres"
	;;
launch) # start an existing cluster (credentials from S3_* in the environment)
	as_postgres env AWS_ACCESS_KEY_ID="${S3_ACCESS_KEY:-}" AWS_SECRET_ACCESS_KEY="${S3_SECRET_KEY:-}" \
		AWS_SESSION_TOKEN="${S3_SESSION_TOKEN:-}" \
		"$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null
	;;
restart)
	"$0" stop "$dir"
	"$0" launch "$dir"
	;;
stop)
	if [ -f "$dir/data/postmaster.pid" ]; then
		as_postgres "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
			as_postgres "$PGBIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
	fi
	;;
*)
	echo "usage: $0 start DIR PORT [conf lines] | launch DIR | restart DIR | stop DIR" >&2
	exit 2
	;;
esac
