#!/usr/bin/env bash
# The pg_regress suite (make installcheck) against a PostgreSQL 15 whose
# postmaster and every backend / background worker run under valgrind
# memcheck, with the local S3 stack of test/run_all.sh. Slow (minutes): a
# documented command for hunting memory errors in reportstore.so, not a CI
# stage.
#
#   bash test/valgrind.sh
#
# Environment:
#   REPORTSTORE_VALGRIND_BUILD=0     use the installed reportstore.so as is
#                                    (default 1: make && make install first)
#   REPORTSTORE_VALGRIND_TIMEOUT=1800  seconds allowed for make installcheck
#   REPORTSTORE_TEST_S3_PORT / REPORTSTORE_TEST_PG_PORT  (default: free ports)
#   REPORTSTORE_VALGRIND_KEEP=1      keep the work directory even on success
#
# Valgrind writes one log per process (WORK/vg/vg.<pid>.log). Every error
# block is classified: "reportstore" when its stack has a frame in
# reportstore.so, otherwise "other" (PostgreSQL, libc, OpenSSL...). The
# reportstore errors are printed in full. PostgreSQL's packaged build lacks
# USE_VALGRIND, so known noise (uninitialised struct padding written to
# files and sockets) is suppressed with a small suppression file written by
# this script (Debian ships no src/tools/valgrind.supp); --gen-suppressions=all
# prints a ready-made suppression after each remaining error.
#
# Ends with "N passed, N failed": pg_regress tests, plus one check that fails
# when any valgrind error involves reportstore.so. Exit status 0 only if all
# passed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PGBIN=${PGBIN:-$("${PG_CONFIG:-pg_config}" --bindir)}
S3_PORT=${REPORTSTORE_TEST_S3_PORT:-}
PG_PORT=${REPORTSTORE_TEST_PG_PORT:-$(/usr/bin/python3 test/harness/freeport.py 1)}
REGRESS_TIMEOUT=${REPORTSTORE_VALGRIND_TIMEOUT:-1800}
WORK=$(mktemp -d /tmp/reportstore-valgrind.XXXXXX)
chmod 755 "$WORK"
mkdir -p "$WORK/pg" "$WORK/vg"
chown postgres: "$WORK/pg" "$WORK/vg"
passed=0
failed=0

as_postgres() {
	if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}
cleanup() {
	if [ -f "$WORK/pg/data/postmaster.pid" ]; then
		as_postgres "$PGBIN/pg_ctl" -D "$WORK/pg/data" -m fast -w -t 120 stop >/dev/null 2>&1 ||
			as_postgres "$PGBIN/pg_ctl" -D "$WORK/pg/data" -m immediate -w -t 60 stop >/dev/null 2>&1
	fi
	bash test/harness/s3stack.sh stop "$WORK/s3" >/dev/null 2>&1
}
finish() {
	cleanup
	echo "$passed passed, $failed failed"
	if ((failed)) || [ "${REPORTSTORE_VALGRIND_KEEP:-0}" = 1 ]; then
		echo "work directory kept: $WORK" >&2
	else
		rm -rf "$WORK"
	fi
	((failed == 0))
	exit $?
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v valgrind >/dev/null 2>&1 || {
	echo "valgrind is not installed (apt-get install valgrind)" >&2
	failed=1
	finish
}

if [ "${REPORTSTORE_VALGRIND_BUILD:-1}" = 1 ]; then
	echo "=== build and install the extension"
	if ! { make -s -j2 >"$WORK/build.log" 2>&1 && make -s install >>"$WORK/build.log" 2>&1; }; then
		tail -n 40 "$WORK/build.log"
		failed=1
		finish
	fi
fi

# --- suppressions: PostgreSQL noise only, never anything in reportstore.so ---
cat >"$WORK/pg-noise.supp" <<'SUPP'
# PostgreSQL built without USE_VALGRIND writes structs with uninitialised
# padding to WAL, relation and stats files and to sockets.
{
   pg-write-padding
   Memcheck:Param
   write(buf)
   ...
   obj:*/postgresql/*/bin/postgres
}
{
   pg-pwrite-padding
   Memcheck:Param
   pwrite64(buf)
   ...
   obj:*/postgresql/*/bin/postgres
}
{
   pg-pwritev-padding
   Memcheck:Param
   pwritev(vector[...])
   ...
   obj:*/postgresql/*/bin/postgres
}
{
   pg-sendto-padding
   Memcheck:Param
   sendto(msg)
   ...
   obj:*/postgresql/*/bin/postgres
}
{
   pg-send-padding
   Memcheck:Param
   send(msg)
   ...
   obj:*/postgresql/*/bin/postgres
}
# glibc's __memmove_chk shares its code with __memcpy_chk, so valgrind takes
# the memmove that RE_compile_and_cache does to reorder its cache (built with
# _FORTIFY_SOURCE) for an overlapping memcpy.
{
   pg-regexp-cache-memmove-chk
   Memcheck:Overlap
   fun:__memcpy_chk
   fun:RE_compile_and_cache
}
# Hashing and comparing structs whose padding was never initialised.
{
   pg-hash-bytes-padding
   Memcheck:Cond
   fun:hash_bytes*
}
{
   pg-hash-bytes-padding-value
   Memcheck:Value8
   fun:hash_bytes*
}
SUPP

echo "=== start the S3 stack"
# shellcheck disable=SC2086 # S3_PORT: empty (a free port) or one port
if ! bash test/harness/s3stack.sh start "$WORK/s3" $S3_PORT; then
	failed=1
	finish
fi
set -a
. "$WORK/s3/s3.env"
set +a

echo "=== start PostgreSQL under valgrind"
as_postgres "$PGBIN/initdb" -D "$WORK/pg/data" -U postgres -A trust --no-sync -E UTF8 --locale=C.UTF-8 \
	>"$WORK/pg/initdb.log" 2>&1 || {
	cat "$WORK/pg/initdb.log"
	failed=1
	finish
}
# Same settings as test/pgcluster.sh, plus what keeps valgrind's cost down:
# few processes (no autovacuum, no parallel workers, no JIT), small memory.
cat >>"$WORK/pg/data/postgresql.conf" <<CONF
port = $PG_PORT
listen_addresses = ''
unix_socket_directories = '$WORK/pg'
shared_preload_libraries = 'reportstore'
fsync = off
log_line_prefix = '%m [%p] %q%a '
log_min_messages = info
reportstore.endpoint = '${S3_ENDPOINT:-}'
reportstore.bucket = '${S3_BUCKET:-reports}'
reportstore.region = '${S3_REGION:-us-east-1}'
shared_buffers = 16MB
max_connections = 20
autovacuum = off
jit = off
max_parallel_workers_per_gather = 0
max_parallel_maintenance_workers = 0
huge_pages = off
checkpoint_timeout = 30min
CONF
VALGRIND=(valgrind --tool=memcheck --leak-check=no --gen-suppressions=all
	--suppressions="$WORK/pg-noise.supp" --trace-children=yes --child-silent-after-fork=no
	--track-origins=no --read-var-info=no --num-callers=40 --error-limit=no
	--log-file="$WORK/vg/vg.%p.log")
as_postgres env AWS_ACCESS_KEY_ID="${S3_ACCESS_KEY:-}" AWS_SECRET_ACCESS_KEY="${S3_SECRET_KEY:-}" \
	AWS_SESSION_TOKEN="${S3_SESSION_TOKEN:-}" \
	"${VALGRIND[@]}" "$PGBIN/postgres" -D "$WORK/pg/data" >"$WORK/pg/server.log" 2>&1 &
ready=0
for _ in $(seq 1 240); do
	if as_postgres "$PGBIN/pg_isready" -q -h "$WORK/pg" -p "$PG_PORT"; then ready=1; break; fi
	sleep 1
done
if ((!ready)); then
	echo "PostgreSQL under valgrind did not accept connections within 240 s" >&2
	tail -n 30 "$WORK/pg/server.log"
	failed=1
	finish
fi
export PGHOST="$WORK/pg" PGPORT="$PG_PORT" PGUSER=postgres

echo "=== pg_regress (make installcheck) under valgrind, at most ${REGRESS_TIMEOUT} s"
t0=$(date +%s)
timeout "$REGRESS_TIMEOUT" make -s installcheck >"$WORK/regress.log" 2>&1
rc=$?
echo "pg_regress ran in $(($(date +%s) - t0)) s (exit $rc$( ((rc == 124)) && echo ', timed out'))"
grep -E "\.\.\.|tests" "$WORK/regress.log" | tail -n 20
n_ok=$(grep -cE "\.\.\. ok" "$WORK/regress.log")
n_bad=$(grep -cE "\.\.\. FAILED|\.\.\. failed" "$WORK/regress.log")
if [ -f regression.diffs ]; then
	cp regression.diffs "$WORK/regression.diffs"
	echo "differences: $WORK/regression.diffs"
	[ "$n_bad" -gt 0 ] || n_bad=1
fi
if ((rc == 124)) && ((n_bad == 0)); then n_bad=1; fi
passed=$((passed + n_ok))
failed=$((failed + n_bad))

# Stop the server so that every process writes its ERROR SUMMARY.
as_postgres "$PGBIN/pg_ctl" -D "$WORK/pg/data" -m fast -w -t 180 stop >/dev/null 2>&1 ||
	as_postgres "$PGBIN/pg_ctl" -D "$WORK/pg/data" -m immediate -w -t 60 stop >/dev/null 2>&1

echo "=== valgrind logs"
# An error is a block of lines (between blank lines) with "at 0x" frames. It
# is reportstore's when its innermost frame outside valgrind's preload, libc
# and libstdc++ is in reportstore.so, a reportstore:: function or one of the
# extension's source files, or is in a library (libcurl, libxml2, OpenSSL,
# zlib, zstd) called from reportstore code. Errors inside PostgreSQL that
# were merely reached from reportstore code (e.g. through SPI) are printed and
# counted apart, but do not fail the run.
/usr/bin/python3 - "$WORK/vg" "$ROOT/src" <<'PY'
import glob, os, re, sys
vg, src = sys.argv[1], sys.argv[2]
ours_files = {os.path.basename(f) for e in ("cpp", "c", "hpp", "h") for f in glob.glob(f"{src}/**/*.{e}", recursive=True)}
def ours(frame):
    if "reportstore" in frame:
        return True
    m = re.search(r"\(([^():]+):\d+\)\s*$", frame)
    return bool(m and m.group(1) in ours_files)
SKIP = ("vgpreload_", "/libc.so", "libc-", "libstdc++")
found, reached, other, procs = [], 0, 0, 0
for path in sorted(glob.glob(os.path.join(vg, "vg.*.log"))):
    procs += 1
    lines = [re.sub(r"^==\d+== ?", "", l) for l in open(path, errors="replace").read().splitlines()]
    block = []
    for l in lines + [""]:
        if l.strip():
            block.append(l)
            continue
        frames = [b for b in block if re.match(r"\s+(at|by) 0x", b)]
        if frames and not block[0].startswith("{"):
            inner = next((f for f in frames if not any(k in f for k in SKIP)), frames[0])
            pg_frame = "/postgresql/" in inner and "reportstore" not in inner
            if ours(inner) or (not pg_frame and any(ours(f) for f in frames)):
                found.append((os.path.basename(path), "\n".join(block)))
            elif any(ours(f) for f in frames):
                reached += 1
                if reached <= 5:
                    print(f"--- (in PostgreSQL, called from reportstore) {os.path.basename(path)}\n" + "\n".join(block[:8]) + "\n")
            else:
                other += 1
        block = []
print(f"{procs} processes traced: {len(found)} error(s) in reportstore code, "
      f"{reached} in PostgreSQL/libraries called from reportstore, {other} other (PostgreSQL, libraries)")
for name, b in found[:20]:
    print(f"--- {name}\n{b}\n")
open(os.path.join(vg, "reportstore_errors.count"), "w").write(str(len(found)))
PY
n_ours=$(cat "$WORK/vg/reportstore_errors.count" 2>/dev/null || echo 1)
grep -h "ERROR SUMMARY" "$WORK"/vg/vg.*.log | sort | uniq -c | sort -rn | head -n 5
if [ "$n_ours" = 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
finish
