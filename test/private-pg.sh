#!/usr/bin/env bash
# A private, relocated copy of the system's PostgreSQL 15 server tree, so that
# `make install` and the tests of one work tree do not touch the system's
# extension directory (several work trees can then be tested side by side).
#
#   bash test/private-pg.sh DIR        prints PG_CONFIG=DIR/usr/lib/postgresql/15/bin/pg_config
#   export PG_CONFIG=...               make install, test/pgcluster.sh and the tests use it
#
# PostgreSQL finds its share and lib directories relative to its binaries, so
# the copy works as it is; the server headers are linked, not copied.
set -euo pipefail
dir=${1:?usage: test/private-pg.sh DIR}
src_bin=$(pg_config --bindir)    # /usr/lib/postgresql/15/bin
src_lib=${src_bin%/bin}          # /usr/lib/postgresql/15
src_share=$(pg_config --sharedir) # /usr/share/postgresql/15
mkdir -p "$dir/usr/lib/postgresql" "$dir/usr/share/postgresql"
dir=$(cd "$dir" && pwd)
[ -d "$dir$src_lib" ] || cp -a "$src_lib" "$dir$(dirname "$src_lib")/"
[ -d "$dir$src_share" ] || cp -a "$src_share" "$dir$(dirname "$src_share")/"
[ -e "$dir/usr/include" ] || ln -s /usr/include "$dir/usr/include"
chmod 755 "$dir"
echo "PG_CONFIG=$dir$src_bin/pg_config"
