#!/usr/bin/env bash
# Fails when a pg_regress test in sql/ is not listed in test/schedule, or the
# schedule names a test without expected output, or a test is named like a
# directory next to it (sql/install.sql beside sql/install/ was one).
cd "$(dirname "$0")/.." || exit 1
status=0
for f in sql/*.sql; do
	t=$(basename "$f" .sql)
	grep -qE "^test: *$t\$" test/schedule || { echo "sql/$t.sql is not in test/schedule"; status=1; }
	[ -f "expected/$t.out" ] || { echo "expected/$t.out is missing"; status=1; }
	[ ! -e "sql/$t" ] || { echo "sql/$t.sql is named like the directory sql/$t: rename the test"; status=1; }
done
for t in $(sed -n 's/^test: *//p' test/schedule); do
	[ -f "sql/$t.sql" ] || { echo "test/schedule names $t, but sql/$t.sql does not exist"; status=1; }
done
exit $status
