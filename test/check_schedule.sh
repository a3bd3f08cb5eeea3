#!/usr/bin/env bash
# Fails when a pg_regress test in sql/ is not listed in test/schedule, or the
# schedule names a test without expected output.
cd "$(dirname "$0")/.." || exit 1
status=0
for f in sql/*.sql; do
	t=$(basename "$f" .sql)
	grep -qE "^test: *$t\$" test/schedule || { echo "sql/$t.sql is not in test/schedule"; status=1; }
	[ -f "expected/$t.out" ] || { echo "expected/$t.out is missing"; status=1; }
done
exit $status
