#!/usr/bin/env bash
# Package test: builds the Debian package (debian/, pg_buildext) from a clean
# copy of the source, installs it, and checks that CREATE EXTENSION works in a
# throwaway PostgreSQL 15 cluster with reportstore preloaded. No S3 server is
# needed (reportstore.endpoint stays empty). Run as root on Debian 12:
#
#   bash test/package/run.sh
#   bash test/package/run.sh --build-only DIR   only build: DIR/reportstore (the source copy),
#                                              the .deb next to it, DIR/build.log and DIR/build.rc
#   bash test/package/run.sh --prebuilt DIR     the tests, with what --build-only left in DIR
#                                              (test/run_all.sh builds it in the background)
#
# Environment:
#   PKG_SOURCE=worktree  (default) build from the working tree: tracked and
#                        untracked files that .gitignore does not exclude,
#                        without *.o / *.so / *.bc build outputs
#   PKG_SOURCE=HEAD      build from the last commit (git archive HEAD)
#   KEEP_PACKAGE=1       leave the package installed at the end
#   KEEP_TMP=1           keep the build directory (its path is printed)
#   PGPORT_TEST=PORT     port of the throwaway cluster (Unix socket only; default: a free one)
#
# The package installs into the same paths as `make install`. If extension
# files were there before (a `make install`), the script puts them back at the
# end and removes the package, so the system is left as it was found. If none
# were there, or the package was already installed, the package stays.
#
# Ends with "package tests: N passed, N failed"; exit status 1 on any failure.
set -uo pipefail

build_only=
prebuilt=
case "${1:-}" in
--build-only) build_only=${2:?--build-only DIR} ;;
--prebuilt) prebuilt=${2:?--prebuilt DIR} ;;
esac

repo=$(cd "$(dirname "$0")/../.." && pwd)
pgver=15
pkg=postgresql-$pgver-reportstore
extdir=/usr/share/postgresql/$pgver/extension
libdir=/usr/lib/postgresql/$pgver/lib
port=${PGPORT_TEST:-$(python3 "$repo/test/harness/freeport.py" 1)}
source_mode=${PKG_SOURCE:-worktree}
start_time=$SECONDS

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok     $*"; }
fail() { failed=$((failed + 1)); echo "FAILED $*"; }
check() { # check DESCRIPTION COMMAND...
	local what=$1
	shift
	if "$@" >"$tmp/check.log" 2>&1; then ok "$what"; else fail "$what"; sed 's/^/       /' "$tmp/check.log" | tail -20; fi
}

[ "$(id -u)" = 0 ] || { echo "test/package/run.sh: run as root" >&2; exit 2; }

# Build tools and build dependencies (debian/control), installed only if missing.
tools=(build-essential dpkg-dev debhelper postgresql-server-dev-all postgresql-$pgver
	libcurl4-openssl-dev libssl-dev libxml2-dev zlib1g-dev libzstd-dev pkg-config)
missing=()
for p in "${tools[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
		{ echo "test/package/run.sh: could not install ${missing[*]}" >&2; exit 2; }
fi

# A clean copy of the source in $1 (a new directory).
copy_source() {
	mkdir -p "$1"
	if [ "$source_mode" = HEAD ]; then
		git -C "$repo" archive HEAD | tar -x -C "$1"
	else
		(cd "$repo" && git ls-files -z --cached --others --exclude-standard |
			grep -zvE '(^|/)[^/]*\.(o|so|bc)$' |
			while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
			tar --null -T - -cf -) | tar -x -C "$1"
	fi
}

if [ -n "$build_only" ]; then
	rm -rf "$build_only/reportstore"
	copy_source "$build_only/reportstore"
	(cd "$build_only/reportstore" && dpkg-buildpackage -us -uc -b -j"$(nproc)") >"$build_only/build.log" 2>&1
	echo $? >"$build_only/build.rc"
	exit "$(cat "$build_only/build.rc")"
fi

tmp=$(mktemp -d /tmp/reportstore-package.XXXXXX)
chmod 755 "$tmp"
cluster=$tmp/cluster
backup=$tmp/backup
mkdir -p "$backup"

# What is installed now, to restore at the end.
was_installed=no
dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" && was_installed=yes
installed_files=()
for f in "$extdir"/reportstore.control "$extdir"/reportstore--*.sql "$libdir"/reportstore.so; do
	[ -e "$f" ] && installed_files+=("$f") && cp -p "$f" "$backup/"
done

restored=no
restore() {
	[ "$restored" = no ] || return 0
	restored=yes
	"$repo/test/pgcluster.sh" stop "$cluster" >/dev/null 2>&1
	if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" &&
		[ "$was_installed" = no ] && [ "${KEEP_PACKAGE:-0}" != 1 ]; then
		# A `make install` run while the package was installed replaced some
		# of its files: keep those (newer) rather than the copies from before.
		local f changed
		changed=$(dpkg -V "$pkg" 2>/dev/null | awk '{print $NF}')
		for f in $changed; do
			case "$f" in "$extdir"/reportstore* | "$libdir"/reportstore*) ;; *) continue ;; esac
			if cp -p "$f" "$backup/" && [[ " ${installed_files[*]:-} " != *" $f "* ]]; then
				installed_files+=("$f")
			fi
		done
		if ((${#installed_files[@]})); then
			# Put the previous files back: remove the package, then rename
			# copies into place so running servers never see a half-written
			# file.
			dpkg -P "$pkg" >/dev/null 2>&1
			for f in "${installed_files[@]}"; do
				cp -p "$backup/$(basename "$f")" "$f.reportstore-restore" && mv -f "$f.reportstore-restore" "$f"
			done
			echo "restored the previous install (${#installed_files[@]} files) and removed $pkg"
		else
			echo "$pkg stays installed (there was no previous install)"
		fi
	elif dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
		echo "$pkg stays installed"
	fi
	if [ "${KEEP_TMP:-0}" = 1 ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap restore EXIT
trap 'exit 130' INT TERM

# 1. A clean copy of the source.
if [ -n "$prebuilt" ]; then
	src=$prebuilt/reportstore
else
	src=$tmp/reportstore
	copy_source "$src"
fi
check "source copy ($source_mode) has debian/ and the control file" test -f "$src/debian/rules" -a -f "$src/reportstore.control"
extversion=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$src/reportstore.control")
debversion=$(cd "$src" && dpkg-parsechangelog -S Version)

# 2. Build the binary package.
if [ -n "$prebuilt" ]; then
	echo "built in the background: $pkg $debversion (log: $prebuilt/build.log)"
	cp "$prebuilt/build.log" "$tmp/build.log"
	build_rc=$(cat "$prebuilt/build.rc" 2>/dev/null || echo 1)
else
	echo "building $pkg $debversion (log: $tmp/build.log)"
	(cd "$src" && dpkg-buildpackage -us -uc -b -j"$(nproc)") >"$tmp/build.log" 2>&1
	build_rc=$?
fi
if [ "$build_rc" = 0 ]; then
	ok "dpkg-buildpackage -us -uc -b"
else
	fail "dpkg-buildpackage -us -uc -b"
	tail -30 "$tmp/build.log" | sed 's/^/       /'
fi
deb=$(dirname "$src")/${pkg}_${debversion}_$(dpkg --print-architecture).deb
check "built $(basename "$deb")" test -f "$deb"
if [ ! -f "$deb" ]; then
	echo "package tests: $passed passed, $failed failed"
	exit 1
fi
check "package depends on postgresql-$pgver" sh -c "dpkg-deb -f '$deb' Depends | grep -q 'postgresql-$pgver'"

# 3. Install it.
check "dpkg -i $(basename "$deb")" dpkg -i "$deb"
for f in "$extdir/reportstore.control" "$extdir/reportstore--$extversion.sql" "$extdir/reportstore--1.0.sql" \
	"$libdir/reportstore.so"; do
	check "$f installed by $pkg" sh -c "test -s '$f' && dpkg -S '$f' | grep -q '^$pkg:'"
done
for f in "$src"/sql/install/reportstore--*--*.sql; do
	check "upgrade script $(basename "$f") installed" cmp "$f" "$extdir/$(basename "$f")"
done
check "reportstore.so resolves all its libraries" sh -c "! ldd '$libdir/reportstore.so' | grep -q 'not found'"

# 4. A throwaway cluster with the packaged library preloaded.
psql_() { psql -X -q -v ON_ERROR_STOP=1 -h "$cluster" -p "$port" -U postgres "$@"; }
if S3_ENDPOINT= "$repo/test/pgcluster.sh" start "$cluster" "$port" >"$tmp/cluster.log" 2>&1; then
	ok "cluster starts with shared_preload_libraries = 'reportstore'"
else
	fail "cluster starts with shared_preload_libraries = 'reportstore'"
	cat "$tmp/cluster.log" "$cluster/server.log" 2>/dev/null | tail -20 | sed 's/^/       /'
fi
check "reportstore is preloaded" sh -c "psql -X -At -h '$cluster' -p '$port' -U postgres -c 'SHOW shared_preload_libraries' | grep -qx reportstore"

psql_ -d postgres -c "CREATE DATABASE app" >/dev/null 2>&1
check "seed schema (test/fixtures/seed_schema_before.sql) loads" psql_ -d app -f "$repo/test/fixtures/seed_schema_before.sql"
check "CREATE EXTENSION reportstore" psql_ -d app -c "CREATE EXTENSION reportstore"
got=$(psql_ -d app -At -c "SELECT extversion FROM pg_extension WHERE extname = 'reportstore'" 2>&1)
if [ "$got" = "$extversion" ]; then ok "extversion is $got (default_version)"; else fail "extversion is '$got', control file says '$extversion'"; fi
check "minio_path column and idx_reports_minio_path added" sh -c "test \"\$(psql -X -At -h '$cluster' -p '$port' -U postgres -d app -c \"SELECT count(*) FROM pg_attribute WHERE attrelid = 'reports'::regclass AND attname = 'minio_path' AND NOT attisdropped\")\" = 1 && test \"\$(psql -X -At -h '$cluster' -p '$port' -U postgres -d app -c \"SELECT count(*) FROM pg_indexes WHERE indexname = 'idx_reports_minio_path'\")\" = 1"
check "reportstore.status answers" psql_ -d app -c "SELECT * FROM reportstore.status"

# The upgrade path 1.0 -> default_version with the packaged scripts.
psql_ -d postgres -c "CREATE DATABASE app_upgrade" >/dev/null 2>&1
check "CREATE EXTENSION reportstore VERSION '1.0', then ALTER EXTENSION UPDATE" sh -c "
	psql -X -q -v ON_ERROR_STOP=1 -h '$cluster' -p '$port' -U postgres -d app_upgrade -f '$repo/test/fixtures/seed_schema_before.sql' &&
	psql -X -q -v ON_ERROR_STOP=1 -h '$cluster' -p '$port' -U postgres -d app_upgrade -c \"CREATE EXTENSION reportstore VERSION '1.0'\" -c 'ALTER EXTENSION reportstore UPDATE' &&
	test \"\$(psql -X -At -h '$cluster' -p '$port' -U postgres -d app_upgrade -c \"SELECT extversion FROM pg_extension WHERE extname = 'reportstore'\")\" = '$extversion'"
check "DROP EXTENSION reportstore keeps the reports table" sh -c "
	psql -X -q -v ON_ERROR_STOP=1 -h '$cluster' -p '$port' -U postgres -d app -c 'DROP EXTENSION reportstore' -c 'SELECT count(*) FROM reports'"

"$repo/test/pgcluster.sh" stop "$cluster"
check "cluster stopped" test ! -e "$cluster/data/postmaster.pid"

# 5. The package's autopkgtest (debian/tests), run directly: pg_virtualenv
# makes its own temporary cluster (library preloaded).
check "debian/tests/installcheck (pg_virtualenv)" sh -c "cd '$src' && debian/tests/installcheck"

# 6. The README says report_offload()/report_fetch() work without
# shared_preload_libraries: loading the library late must not fail.
check "CREATE EXTENSION reportstore without shared_preload_libraries" \
	pg_virtualenv -v "$pgver" sh -c "psql -X -q -v ON_ERROR_STOP=1 -f '$repo/test/fixtures/seed_schema_before.sql' &&
		psql -X -q -v ON_ERROR_STOP=1 -c 'CREATE EXTENSION reportstore' -c 'SELECT report_fetch(gen_random_uuid())' 2>&1 | grep -q 'does not exist'"

restore
echo "run time $((SECONDS - start_time))s"
echo "package tests: $passed passed, $failed failed"
((failed == 0))
