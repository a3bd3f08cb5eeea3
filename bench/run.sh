#!/usr/bin/env bash
# reportstore benchmark (see bench/README.md).
#
#   bash bench/run.sh           # full run (~25 min): bench/results/latest.{json,md,png}, then bench/limits.sh
#   bash bench/run.sh --smoke   # about a minute: checks the harness and that figures are sane
#
# Installs what it needs (apt), builds and installs the extension, starts its own
# PostgreSQL cluster, S3 stack, sink (bench/sink.cpp) and nginx on private ports, and
# stops all of them on exit. The S3 server is moto in full runs (the published figures)
# and Ceph RGW in smoke runs (what scripts/install-deps.sh installs; S3_RGW_DIR shares
# a running one, as test/run_all.sh does), in a bucket of its own.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE=full
[ "${1:-}" = --smoke ] && MODE=smoke
WORK=${BENCH_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/reportstore-bench-$MODE.XXXXXX")}
SHM=/dev/shm/$(basename "$WORK")
RESULTS="$ROOT/bench/results"
cd "$ROOT"
# free ports (the S3 front, the sink, nginx, PostgreSQL); the stack picks its backend's own
mapfile -t PORTS < <(/usr/bin/python3 test/harness/freeport.py 4)
S3_PORT=${PORTS[0]}           # the SigV4-verifying front (moto behind it, on a port of its own)
SINK_PORT=${PORTS[1]}
NGINX_PORT=${PORTS[2]}
PGPORT=${PORTS[3]}

say() { echo "[$(date +%H:%M:%S)] $*"; }

stop_all() {
	set +e
	test/pgcluster.sh stop "$WORK/pg" >/dev/null 2>&1
	bash test/harness/s3stack.sh stop "$WORK/s3" >/dev/null 2>&1
	[ -s "$WORK/sink.pid" ] && kill "$(cat "$WORK/sink.pid")" 2>/dev/null
	[ -s "$WORK/nginx/nginx.pid" ] && kill "$(cat "$WORK/nginx/nginx.pid")" 2>/dev/null
	rm -f "$WORK/sink.pid"
	rm -rf "$SHM"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- dependencies
bash scripts/install-deps.sh >/dev/null
# nginx-light carries the DAV module (--with-http_dav_module); linux-perf for the profile;
# postgresql-contrib for pgbench.
need=(gnuplot-nox nginx-light python3-boto3 python3-psycopg2 postgresql-contrib linux-perf)
missing=()
for p in "${need[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	say "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's nginx package starts a default server on port 80: leave it alone.

# The extension: the working tree by default; BENCH_BUILD=head builds the last commit in a
# scratch copy instead (also the fallback when the working tree does not build, e.g. while
# somebody is in the middle of an edit).
mkdir -p "$WORK" "$RESULTS"
build_head() {
	rm -rf "$WORK/build"
	mkdir -p "$WORK/build"
	git archive HEAD | tar -x -C "$WORK/build"
	(cd "$WORK/build" && make -s -j2 >/dev/null && make -s install >/dev/null)
	BUILT="HEAD $(git rev-parse --short HEAD)"
}
if [ "${BENCH_BUILD:-tree}" = head ]; then
	say "build and install the extension (HEAD, BENCH_BUILD=head)"
	build_head
elif say "build and install the extension (working tree)" && make -s -j2 >"$WORK/make.log" 2>&1 && make -s install >>"$WORK/make.log" 2>&1; then
	BUILT="working tree on $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src sql Makefile || echo ' + uncommitted changes')"
else
	tail -5 "$WORK/make.log"
	say "the working tree does not build; benchmarking HEAD instead"
	build_head
fi
export BENCH_BUILT="$BUILT"
say "extension: $BUILT"
g++ -O2 -std=c++17 -pthread bench/sink.cpp -o "$WORK/sink" -lcrypto

# ---------------------------------------------------------------- servers
stop_all
trap stop_all EXIT
rm -rf "$WORK/pg" "$WORK/s3" "$WORK/nginx" "$SHM"
mkdir -p "$WORK" "$SHM"
chmod 755 "$WORK"

if [ "$MODE" = smoke ]; then STORE=rgw; else STORE=moto; fi
say "S3 stack ($STORE) behind the front on $S3_PORT, sink on $SINK_PORT, nginx DAV on $NGINX_PORT, PostgreSQL on $PGPORT"
S3_BACKEND=$STORE bash test/harness/s3stack.sh start "$WORK/s3" "$S3_PORT" 2>"$WORK/s3stack.log" >/dev/null ||
	{ cat "$WORK/s3stack.log"; exit 1; }
# shellcheck disable=SC1091
. "$WORK/s3/s3.env"
if [ "$STORE" = rgw ]; then
	# RGW checks signatures: the real keys (passed to the server through its environment,
	# never written to postgresql.conf), and a bucket of the bench's own
	BENCH_S3_ACCESS_KEY=$S3_BACKEND_ACCESS_KEY BENCH_S3_SECRET_KEY=$S3_BACKEND_SECRET_KEY BENCH_BUCKET=bench-smoke
else
	BENCH_S3_ACCESS_KEY=bench BENCH_S3_SECRET_KEY=bench BENCH_BUCKET=reports  # moto takes any credentials
fi
export BENCH_STORE=$STORE BENCH_S3_ACCESS_KEY BENCH_S3_SECRET_KEY BENCH_BUCKET

setsid "$WORK/sink" "$SINK_PORT" >"$WORK/sink.log" 2>&1 </dev/null &
echo $! >"$WORK/sink.pid"

mkdir -p "$WORK/nginx/tmp" "$SHM/dav"
chmod 777 "$SHM/dav" "$WORK/nginx/tmp"
cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/tmp;
    proxy_temp_path $WORK/nginx/tmp;
    fastcgi_temp_path $WORK/nginx/tmp;
    uwsgi_temp_path $WORK/nginx/tmp;
    scgi_temp_path $WORK/nginx/tmp;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $SHM/dav;
        client_max_body_size 0;
        dav_methods PUT DELETE;
        create_full_put_path on;
        dav_access user:rw group:rw all:rw;
    }
}
CONF
nginx -c "$WORK/nginx/nginx.conf"

for _ in $(seq 1 50); do
	curl -s -o /dev/null "http://127.0.0.1:$SINK_PORT/" && curl -s -o /dev/null "http://127.0.0.1:$NGINX_PORT/" && break
	sleep 0.1
done

# The extension talks to the S3 server directly (the Python front would be the bottleneck).
S3_ENDPOINT=$S3_BACKEND_ENDPOINT S3_ACCESS_KEY=$BENCH_S3_ACCESS_KEY S3_SECRET_KEY=$BENCH_S3_SECRET_KEY \
	S3_BUCKET=$BENCH_BUCKET S3_SESSION_TOKEN= \
	test/pgcluster.sh start "$WORK/pg" "$PGPORT" "reportstore.database = 'bench'" "shared_buffers = '256MB'" \
	"max_wal_size = '4GB'" "checkpoint_timeout = '30min'" >/dev/null
export PGHOST="$WORK/pg" PGPORT PGUSER=postgres
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE bench"
test/pgcluster.sh restart "$WORK/pg"
psql -X -q -v ON_ERROR_STOP=1 -d bench -f test/fixtures/seed_schema_after.sql -c "CREATE EXTENSION reportstore"

# ---------------------------------------------------------------- the benchmark
rc=0
BENCH_MODE=$MODE ROOT="$ROOT" PGDIR="$WORK/pg" S3_URL="$S3_BACKEND_ENDPOINT" S3DIR="$WORK/s3" \
	SINK_URL="http://127.0.0.1:$SINK_PORT" NGINX_URL="http://127.0.0.1:$NGINX_PORT" SHM="$SHM" RESULTS="$RESULTS" \
	MOTO_PY="$(command -v python3)" /usr/bin/python3 bench/bench.py || rc=$?
read -r passed failed <"$RESULTS/checks.txt" 2>/dev/null || { passed=0; failed=1; }
rm -f "$RESULTS/checks.txt"

# ---------------------------------------------------------------- plot
if [ "$MODE" = smoke ]; then dat="$RESULTS/smoke-plot.dat"; png="$WORK/smoke.png"; else
	dat="$RESULTS/plot.dat"; png="$RESULTS/latest.png"; fi
if [ -s "$dat" ]; then
	gnuplot <<GP
set terminal pngcairo size 1000,560 noenhanced font ",11"
set output "$png"
set title "reportstore migration throughput ($MODE, $(nproc) CPUs, median of runs)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set logscale y
set yrange [1:*]
set ylabel "MiB/s (log scale)"
set xlabel "report size"
set key top left
set grid ytics
plot "$dat" using 2:xtic(1) title "worker -> moto", '' using 3 title "Python script -> moto", \
     '' using 4 title "curl ceiling -> moto", '' using 5 title "worker -> sink", '' using 6 title "curl ceiling -> sink"
GP
fi
if [ -s "$png" ] && [ "$(head -c 4 "$png" | tail -c 3)" = PNG ]; then
	passed=$((passed + 1)); echo "  [ok] PNG plot written: $png"
else
	failed=$((failed + 1)); echo "  [FAIL] PNG plot not written"
fi
[ "$MODE" = full ] && rm -f "$RESULTS/plot.dat"
[ "$MODE" = smoke ] && rm -f "$RESULTS/smoke-plot.dat"
if [ "$MODE" = full ]; then
	say "against the limits (bench/limits.sh: the worker against the database floor, 1 and 2 workers; report_fetch_many; memory)"
	stop_all
	bash bench/limits.sh || { failed=$((failed + 1)); echo "  [FAIL] bench/limits.sh"; }
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ "$rc" = 0 ]
