#!/usr/bin/env bash
# The worker and the bulk read against the limits (see bench/README.md, "Against the limits").
#
#   bash bench/limits.sh            # about 10 minutes: bench/results/limits.{md,json}
#   LIMITS_QUICK=1 bash bench/limits.sh   # small sizes only, about 3 minutes
#
# Starts its own PostgreSQL cluster, Ceph RGW (test/harness/s3stack.sh, used directly: the
# Python front would be the bottleneck) and the sink (bench/sink.cpp), on free ports, and
# stops them on exit. Figures are reported, never asserted.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/reportstore-limits.XXXXXX")
chmod 755 "$WORK"
mapfile -t PORTS < <(/usr/bin/python3 test/harness/freeport.py 3)
S3_PORT=${PORTS[0]} SINK_PORT=${PORTS[1]} PGPORT=${PORTS[2]}
say() { echo "[$(date +%H:%M:%S)] $*"; }

stop_all() {
	set +e
	test/pgcluster.sh stop "$WORK/pg" >/dev/null 2>&1
	bash test/harness/s3stack.sh stop "$WORK/s3" >/dev/null 2>&1
	[ -s "$WORK/sink.pid" ] && kill "$(cat "$WORK/sink.pid")" 2>/dev/null
	rm -f "$WORK/sink.pid"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

bash scripts/install-deps.sh >/dev/null
# gnuplot for the plot, postgresql-contrib for pgbench
missing=()
for p in gnuplot-nox postgresql-contrib; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
say "build and install the extension"
make -s -j2 >"$WORK/make.log" 2>&1 && make -s install >>"$WORK/make.log" 2>&1 || { tail -20 "$WORK/make.log"; exit 1; }
g++ -O2 -std=c++17 -pthread bench/sink.cpp -o "$WORK/sink" -lcrypto
setsid "$WORK/sink" "$SINK_PORT" >"$WORK/sink.log" 2>&1 </dev/null &
echo $! >"$WORK/sink.pid"

say "Ceph RGW (front on $S3_PORT), sink on $SINK_PORT, PostgreSQL on $PGPORT"
RGW_MEMSTORE_BYTES=${RGW_MEMSTORE_BYTES:-6442450944} S3_BACKEND=rgw S3_STACK_BUCKET=limits bash test/harness/s3stack.sh start "$WORK/s3" "$S3_PORT" >"$WORK/s3stack.log" 2>&1 ||
	{ cat "$WORK/s3stack.log"; exit 1; }
set -a
# shellcheck disable=SC1091
. "$WORK/s3/s3.env"
set +a
# RGW directly, with its own keys (in the server's environment only).
S3_ENDPOINT=$S3_BACKEND_ENDPOINT S3_ACCESS_KEY=$S3_BACKEND_ACCESS_KEY S3_SECRET_KEY=$S3_BACKEND_SECRET_KEY \
	test/pgcluster.sh start "$WORK/pg" "$PGPORT" "reportstore.database = 'limits'" "shared_buffers = '512MB'" \
	"reportstore.naptime = '1h'" "max_wal_size = '4GB'" "reportstore.max_workers = 2" >/dev/null
export PGHOST="$WORK/pg" PGPORT PGUSER=postgres LIMITS_SINK="http://127.0.0.1:$SINK_PORT" LIMITS_RGW="$S3_BACKEND_ENDPOINT"
export LIMITS_DIR="$WORK"
/usr/bin/python3 bench/limits.py "$ROOT/bench/results"
if [ "${LIMITS_QUICK:-}" != 1 ] && [ -s bench/results/limits.json ]; then
	/usr/bin/python3 bench/limits_plot.py bench/results/limits.json bench/results/limits.png
	say "plot: bench/results/limits.png"
fi
