#!/usr/bin/env bash
#
# scripts/demo.sh: set up cmapext and show consistent iteration in action.
#
# Run as root on Debian 12 (or with sudo).  Installs what is missing, builds
# and installs the extension, starts a throwaway server that preloads it
# (as the postgres OS user), then runs two sessions side by side:
#
#   writer: 1000 keys acct:000..acct:999; every commit rewrites ALL of them
#           with the next generation number, and moves money between two
#           accounts with cmap_increment so the total stays 1,000,000;
#   reader: iterates the whole map over and over while the writer commits,
#           and reports, per iteration, the map version it read, how many
#           different generations it saw (always 1: never a mix of two
#           versions) and the total balance (always 1,000,000).
#
# DEMO_SECONDS (default 10) sets how long the writer runs.
#
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_root

seconds="${DEMO_SECONDS:-10}"

log "checking packages"
ensure_build_packages
log "building"
build_and_install >/dev/null
echo "cmapext built and installed"

dir=$(mktemp -d /tmp/cmapext-demo.XXXXXX)
chmod 755 "$dir"
port=$(free_port)
trap 'stop_cluster "$dir"; rm -rf "$dir"' EXIT
log "starting a throwaway server on port $port (shared_preload_libraries = 'cmapext')"
start_cluster "$dir" "$port" "cmapext.max_memory = 64MB"

psql_demo() { run_pg psql -X -q -h "$dir" -p "$port" -d postgres "$@"; }

psql_demo <<'SQL'
CREATE EXTENSION cmapext;
-- 1000 accounts of 1000 each; the value is "generation:balance"
SELECT count(cmap_store(format('acct:%s', lpad(i::text, 3, '0')), '0:1000'))
FROM generate_series(0, 999) i \g /dev/null

-- The writer: each commit is one new version of all 1000 keys.
CREATE PROCEDURE demo_writer(seconds int) LANGUAGE plpgsql AS $$
DECLARE
	gen int := 0;
	stop timestamptz := clock_timestamp() + make_interval(secs => seconds);
	a int; b int; amount int;
BEGIN
	WHILE clock_timestamp() < stop LOOP
		gen := gen + 1;
		a := (random() * 999)::int;
		b := (random() * 999)::int;
		amount := (random() * 50)::int;
		PERFORM cmap_store(key, gen || ':' || (split_part(value, ':', 2)::int
				+ CASE WHEN key = format('acct:%s', lpad(a::text, 3, '0')) THEN -amount ELSE 0 END
				+ CASE WHEN key = format('acct:%s', lpad(b::text, 3, '0')) THEN amount ELSE 0 END))
		FROM cmap_iterate('acct:');
		COMMIT;
	END LOOP;
	RAISE NOTICE 'writer: % commits, each rewriting all 1000 keys', gen;
END $$;

-- The reader: one iteration per statement; each must be one version.
CREATE FUNCTION demo_read(OUT version bigint, OUT keys bigint,
                          OUT generations bigint, OUT generation text,
                          OUT total bigint)
LANGUAGE sql AS $$
	SELECT max(version), count(*), count(DISTINCT split_part(value, ':', 1)),
	       min(split_part(value, ':', 1)), sum(split_part(value, ':', 2)::bigint)
	FROM cmap_iterate('acct:')
$$;
SQL

log "writer commits for $seconds s while the reader iterates"
psql_demo -c "CALL demo_writer($seconds)" 2>&1 | sed 's/^NOTICE:  /  /' &
writer=$!

sleep 0.5
n=0
bad=0
first=""
last=""
while kill -0 $writer 2>/dev/null; do
	row=$(psql_demo -At -F ' ' -c "SELECT * FROM demo_read()")
	read -r version keys gens gen total <<<"$row"
	n=$((n + 1))
	[ -z "$first" ] && first=$version
	last=$version
	if [ "$keys" != 1000 ] || [ "$gens" != 1 ] || [ "$total" != 1000000 ]; then
		bad=$((bad + 1))
		verdict="MIXED VERSIONS"
	else
		verdict="one version"
	fi
	if [ $n -le 10 ] || [ $((n % 25)) -eq 0 ] || [ "$verdict" != "one version" ]; then
		printf '  iteration %4d: map version %6s  keys %s  generations seen %s (gen %s)  total %s  -> %s\n' \
			"$n" "$version" "$keys" "$gens" "$gen" "$total" "$verdict"
	fi
	sleep 0.05
done
wait $writer || true

log "result"
echo "  $n iterations read versions $first .. $last while the writer committed"
if [ $bad -eq 0 ]; then
	echo "  every iteration saw exactly one version: 1000 keys, one generation, total 1,000,000"
else
	echo "  $bad iterations saw a mix of versions (this is a bug)"
	exit 1
fi
psql_demo -c "SELECT version, entries, memory_used, pinned_snapshots, committed_versions, reclaimed_bytes FROM cmap_stats()"
