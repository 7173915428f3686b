#!/usr/bin/env bash
#
# bench/run.sh: the cmapext benchmark (design.md section 5), side by side
# with its baselines in one throwaway cluster and one run.
#
#   bench/run.sh [--quick] [--out DIR]
#
# Run as root.  Installs what it needs if missing (PostgreSQL 15, pgbench,
# gnuplot, python3; builds and installs the extension only if cmapext.so is
# not installed), creates a private cluster in a temp dir as the postgres OS
# user, runs every measurement, stops and removes the cluster.  Prints a table
# of absolute figures and ratios, writes DIR/results.json and DIR/ratios.png
# (default DIR: bench/results, git-ignored).  See bench/README.md.
#
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PG_BIN=/usr/lib/postgresql/15/bin
PY=/usr/bin/python3
TOOL="$HERE/benchtool.py"

QUICK=0
OUT="$HERE/results"
while [ $# -gt 0 ]; do
	case "$1" in
		--quick) QUICK=1 ;;
		--out) OUT="${2:?--out needs a directory}"; shift ;;
		--out=*) OUT="${1#--out=}" ;;
		-h|--help) sed -n '2,14p' "$0"; exit 0 ;;
		*) echo "usage: $0 [--quick] [--out DIR]" >&2; exit 2 ;;
	esac
	shift
done

if [ "$QUICK" = 1 ]; then
	N=100000			# keys for points ops, bulk, iteration, memory
	SECS=3				# seconds per pgbench run
	WARMUP=0			# seconds of unmeasured pgbench before each run
	BULK_REPS=1
	ITER_REPS=5
	SIZES="1000 10000 100000"
	MAX_MEMORY=1536MB
else
	N=1000000
	SECS=10
	WARMUP=2
	BULK_REPS=3
	ITER_REPS=5
	SIZES="1000 10000 100000 1000000 10000000"
	MAX_MEMORY=3GB
fi
CLIENTS=2

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (PostgreSQL itself runs as the postgres user)"

# --------------------------------------------------------------------------
# What we need
# --------------------------------------------------------------------------
pkgs=()
[ -x "$PG_BIN/postgres" ] || pkgs+=(postgresql-15)
[ -x "$PG_BIN/pgbench" ] && [ -f /usr/share/postgresql/15/extension/pg_prewarm.control ] ||
	pkgs+=(postgresql-15 postgresql-contrib)
command -v gnuplot >/dev/null || pkgs+=(gnuplot-nox)
[ -x "$PY" ] || pkgs+=(python3)
[ -x "$PG_BIN/pg_config" ] || pkgs+=(postgresql-client-15)
if [ ${#pkgs[@]} -gt 0 ]; then
	log "installing: ${pkgs[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
PKGLIBDIR="$("$PG_BIN/pg_config" --pkglibdir)"
if [ ! -f "$PKGLIBDIR/cmapext.so" ]; then
	log "cmapext.so not installed: building it"
	command -v make >/dev/null && [ -d /usr/include/postgresql/15/server ] || {
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential postgresql-server-dev-15 >/dev/null
	}
	make -C "$ROOT" install PG_CONFIG="$PG_BIN/pg_config"
fi

# --------------------------------------------------------------------------
# Throwaway cluster
# --------------------------------------------------------------------------
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
rm -f "$OUT"/results.json "$OUT"/ratios.png "$OUT"/pinned_series.tsv "$OUT"/summary.txt \
	"$OUT"/server.log "$OUT"/facts.tsv "$OUT"/ratios.dat "$OUT"/size.dat "$OUT"/ratios.gp
TMPD="$(mktemp -d /tmp/cmapext-bench.XXXXXX)"
chmod 755 "$TMPD"
mkdir -p "$TMPD/logs" "$TMPD/out" "$TMPD/scripts"
FACTS="$TMPD/facts.tsv"
: > "$FACTS"
: > "$TMPD/bgpids"
chown -R postgres:postgres "$TMPD"
STARTED=0

cleanup() {
	local rc=$? p
	set +e
	while read -r p; do kill "$p" 2>/dev/null; done < "$TMPD/bgpids"
	if [ "$STARTED" = 1 ]; then
		if [ $rc -ne 0 ]; then
			cp "$TMPD/server.log" "$OUT/server.log" && log "server log kept in $OUT/server.log"
			cp "$FACTS" "$OUT/facts.tsv"
		fi
		runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$TMPD/data" -m immediate -w stop >/dev/null 2>&1
	fi
	rm -rf "$TMPD"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# a free port (the server listens on a Unix socket in $TMPD only)
PORT="$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

pgrun() {
	(cd "$TMPD" && runuser -u postgres -- env PGHOST="$TMPD" PGPORT="$PORT" PGUSER=postgres \
		PGDATABASE=bench "$@")
}
# q SQL: run SQL (one or more statements, each in its own transaction)
q() { pgrun "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 <<< "$1"; }
fact() { printf '%s\t%s\n' "$1" "$2" >> "$FACTS"; }
getfact() { awk -F'\t' -v k="$1" '$1 == k { v = $2 } END { print v }' "$FACTS"; }
warn() { log "WARNING: $*"; fact "warn.$(date +%s%N)" "$*"; }
bg_register() { echo "$1" >> "$TMPD/bgpids"; }

log "initdb in $TMPD (port $PORT, cmapext.max_memory = $MAX_MEMORY)"
runuser -u postgres -- "$PG_BIN/initdb" -D "$TMPD/data" -A trust -U postgres -E UTF8 --locale=C -N \
	>"$TMPD/initdb.log" 2>&1 || { cat "$TMPD/initdb.log" >&2; die "initdb failed"; }
cat >> "$TMPD/data/postgresql.conf" <<EOF

# bench/run.sh
shared_preload_libraries = 'cmapext'
cmapext.max_memory = '$MAX_MEMORY'
cmapext.persist = off
shared_buffers = 1GB
max_connections = 20
port = $PORT
listen_addresses = ''
unix_socket_directories = '$TMPD'
autovacuum = off		# explicit VACUUMs only, so that no run is disturbed
max_wal_size = 8GB
checkpoint_timeout = 30min
client_min_messages = warning
EOF
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$TMPD/data" -l "$TMPD/server.log" -w -t 120 start >/dev/null ||
	{ tail -20 "$TMPD/server.log" >&2; die "server did not start"; }
STARTED=1
pgrun "$PG_BIN/createdb" bench
q "CREATE EXTENSION cmapext; CREATE EXTENSION pg_prewarm;"

fact meta.quick "$([ "$QUICK" = 1 ] && echo yes || echo no)"
fact meta.keys "$N"
fact meta.clients "$CLIENTS"
fact meta.seconds "$SECS"
fact meta.pg_version "$(q 'SHOW server_version')"
fact meta.max_memory "$MAX_MEMORY"
fact meta.date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
fact meta.git_commit "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
fact meta.extension_so_mtime "$(date -u -r "$PKGLIBDIR/cmapext.so" +%Y-%m-%dT%H:%M:%SZ)"
fact meta.nproc "$(nproc)"
fact meta.loadavg_start "$(cut -d' ' -f1-3 /proc/loadavg)"

# Wait (bounded) until the background reclaimer has freed everything retired.
wait_reclaim() {
	local i r
	for i in $(seq 1 600); do
		r="$(q 'SELECT retained_bytes FROM cmap_stats()')"
		[ "$r" = 0 ] && return 0
		sleep 0.2
	done
	warn "retained_bytes still $r after 120 s: reclaimer did not catch up"
}

# Make the map hold exactly 'k'||i -> 'v'||i for i in 1..N (the point-op data).
ensure_kmap() {
	if [ "$(q 'SELECT cmap_count()')" != "$N" ] || [ "$(q "SELECT cmap_load('k$N')")" != "v$N" ]; then
		log "  (re)loading the map with $N keys"
		q "SELECT cmap_clear()" >/dev/null
		wait_reclaim
		q "SELECT count(cmap_store('k' || i, 'v' || i)) FROM generate_series(1, $N) i" >/dev/null
	fi
	wait_reclaim
}

# run_section FUNC: run one measurement in a subshell with errexit; a failure
# is reported as a warning (its figures stay missing) and the next one runs.
run_section() {
	local rc
	set +e
	( set -e; "$1" )
	rc=$?
	set -e
	[ $rc -eq 0 ] || warn "measurement $1 failed (exit $rc); its figures are missing"
}

# --------------------------------------------------------------------------
# pgbench scripts (point operations use :k drawn from 1..:n)
# --------------------------------------------------------------------------
S="$TMPD/scripts"
printf '\\set k random(1, :n)\nSELECT 1;\n' > "$S/select1.sql"
printf '\\set k random(1, :n)\nSELECT cmap_load('"'k'"' || :k);\n' > "$S/load.sql"
printf '\\set k random(1, :n)\nSELECT v FROM kv WHERE k = '"'k'"' || :k;\n' > "$S/pk_lookup.sql"
printf '\\set k random(1, :n)\nSELECT cmap_store('"'k'"' || :k, '"'v'"' || :k);\n' > "$S/store.sql"
printf '\\set k random(1, :n)\nINSERT INTO kv VALUES ('"'k'"' || :k, '"'v'"' || :k) ON CONFLICT (k) DO UPDATE SET v = excluded.v;\n' \
	> "$S/upsert.sql"
printf '\\set k random(1, :n)\n\\set r random(1, 1000000000)\nSELECT cmap_store('"'k'"' || :k, '"'w'"' || :r);\n' \
	> "$S/churn.sql"
printf '\\set k random(1, :n)\n\\set r random(1, 1000000000)\nINSERT INTO mt VALUES ('"'k'"' || :k, '"'v'"' || :r) ON CONFLICT (k) DO UPDATE SET v = excluded.v;\n' \
	> "$S/mirror_upsert.sql"
chown -R postgres:postgres "$S"

# pgb_cmd SCRIPT CLIENTS NKEYS PGOPTIONS SECS [pgbench options]
pgb_cmd() {
	local script=$1 c=$2 n=$3 opts=$4 secs=$5
	shift 5
	pgrun env PGOPTIONS="$opts" "$PG_BIN/pgbench" -n -M prepared -c "$c" -j "$c" -T "$secs" \
		-D n="$n" -f "$S/$script.sql" "$@"
}
# pgb NAME SCRIPT CLIENTS NKEYS [PGOPTIONS]: one timed pgbench run (after a
# warm-up in full mode), logged per transaction; records tps.NAME and
# lat.NAME.{p50,p99,p999,n}.  A failed run is reported, not fatal.
pgb() {
	local name=$1 script=$2 c=$3 n=$4 opts=${5:-}
	local outf="$TMPD/out/$name.txt" tps lat
	if [ "$WARMUP" -gt 0 ]; then
		pgb_cmd "$script" "$c" "$n" "$opts" "$WARMUP" >/dev/null 2>&1 || true
	fi
	if ! pgb_cmd "$script" "$c" "$n" "$opts" "$SECS" -l --log-prefix="$TMPD/logs/$name" >"$outf" 2>&1; then
		warn "pgbench $name failed: $(grep -m1 'ERROR' "$outf" || tail -1 "$outf")"
		rm -f "$TMPD/logs/$name".*
		fact "failed.$name" 1
		return 0
	fi
	tps="$($PY "$TOOL" tps "$outf")"
	lat="$($PY "$TOOL" lat "$TMPD/logs/$name")"
	rm -f "$TMPD/logs/$name".*
	set -- $lat
	fact "tps.$name" "$tps"
	fact "lat.$name.p50" "$1"
	fact "lat.$name.p99" "$2"
	fact "lat.$name.p999" "$3"
	fact "lat.$name.n" "$4"
	log "  $name: $tps tps, p50 $1 ms, p99 $2 ms, p99.9 $3 ms"
}

# timed NAME SQL: run SQL once in its own psql with \timing, append to $TMPD/out/NAME.tim
timed() {
	pgrun "$PG_BIN/psql" -X -At -v ON_ERROR_STOP=1 -c '\timing on' -c "\\echo @@$1" -c "$2" \
		>> "$TMPD/out/$1.tim"
}
best_ms() { $PY "$TOOL" timing "$TMPD/out/$1.tim" | awk -v n="$1" '$1 == n { print $2 }'; }

# --------------------------------------------------------------------------
# Setup: the unlogged table kv with the same N rows as the map
# --------------------------------------------------------------------------
log "setup: unlogged table kv with $N rows"
q "CREATE UNLOGGED TABLE kv (k text COLLATE \"C\" PRIMARY KEY, v text);
   INSERT INTO kv SELECT 'k' || i, 'v' || i FROM generate_series(1, $N) i;
   VACUUM ANALYZE kv;
   CREATE FUNCTION kv_srf() RETURNS TABLE(key text, value text) LANGUAGE sql AS 'SELECT k, v FROM kv';"

# --------------------------------------------------------------------------
# 3. Bulk load in one transaction (best of BULK_REPS, each from empty)
# --------------------------------------------------------------------------
bulk_load() {
	local rep
	log "3. bulk load of $N keys, best of $BULK_REPS"
	for rep in $(seq 1 "$BULK_REPS"); do
		q "SELECT cmap_clear()" >/dev/null
		wait_reclaim
		timed bulk_cmap "SELECT count(cmap_store('k' || i, 'v' || i)) FROM generate_series(1, $N) i"
		q "DROP TABLE IF EXISTS kv2; CREATE UNLOGGED TABLE kv2 (k text COLLATE \"C\" PRIMARY KEY, v text);"
		timed bulk_insert "INSERT INTO kv2 SELECT 'k' || i, 'v' || i FROM generate_series(1, $N) i"
	done
	q "DROP TABLE kv2"
	fact bulk.cmap_ms "$(best_ms bulk_cmap)"
	fact bulk.insert_ms "$(best_ms bulk_insert)"
	[ "$(q 'SELECT cmap_count()')" = "$N" ] ||
		warn "map holds $(q 'SELECT cmap_count()') keys after the bulk load, not $N"
	log "  cmap $(best_ms bulk_cmap) ms, INSERT $(best_ms bulk_insert) ms"
}

# --------------------------------------------------------------------------
# 4. Full iteration and prefix scan (best of ITER_REPS, interleaved)
# --------------------------------------------------------------------------
iteration() {
	local rep
	log "4. full iteration over $N keys, best of $ITER_REPS"
	ensure_kmap
	q "SELECT pg_prewarm('kv'), pg_prewarm('kv_pkey')" >/dev/null
	{
		echo '\timing on'
		echo '\echo @@-'		# (statements after a "@@-" marker are not measured)
		echo 'SET max_parallel_workers_per_gather = 0;'
		for rep in $(seq 1 "$ITER_REPS"); do
			echo '\echo @@iter_cmap'
			echo 'SELECT count(*), sum(length(value)) FROM cmap_iterate();'
			echo '\echo @@iter_seqscan'
			echo 'SELECT count(*), sum(length(v)) FROM kv;'
			echo '\echo @@iter_srf'
			echo 'SELECT count(*), sum(length(value)) FROM kv_srf();'
			echo '\echo @@iter_genseries'
			echo "SELECT count(*), sum(length(x::text)) FROM generate_series(1, $N) x;"
			echo '\echo @@prefix_cmap'
			echo "SELECT count(*) FROM cmap_iterate('k12');"
			echo '\echo @@prefix_table'
			echo "SELECT count(*) FROM kv WHERE k LIKE 'k12%';"
			echo '\echo @@-'
			echo 'RESET max_parallel_workers_per_gather;'
			echo '\echo @@iter_seqscan_parallel'
			echo 'SELECT count(*), sum(length(v)) FROM kv;'
			echo '\echo @@-'
			echo 'SET max_parallel_workers_per_gather = 0;'
		done
	} > "$TMPD/iter.sql"
	chown postgres "$TMPD/iter.sql"
	pgrun "$PG_BIN/psql" -X -At -v ON_ERROR_STOP=1 -f "$TMPD/iter.sql" > "$TMPD/out/iter.tim"
	$PY "$TOOL" timing "$TMPD/out/iter.tim" > "$TMPD/out/iter.best"
	it() { awk -v n="$1" -v c="$2" '$1 == n { print $c }' "$TMPD/out/iter.best"; }
	fact iter.cmap_ms "$(it iter_cmap 2)"
	fact iter.seqscan_ms "$(it iter_seqscan 2)"
	fact iter.srf_ms "$(it iter_srf 2)"
	fact iter.genseries_ms "$(it iter_genseries 2)"
	fact iter.seqscan_parallel_ms "$(it iter_seqscan_parallel 2)"
	fact prefix.cmap_ms "$(it prefix_cmap 2)"
	fact prefix.table_ms "$(it prefix_table 2)"
	fact prefix.rows "$(it prefix_cmap 4)"
	[ "$(it iter_cmap 4)" = "$(it iter_seqscan 4)" ] ||
		warn "cmap_iterate() gives count|sum $(it iter_cmap 4), the table $(it iter_seqscan 4)"
	[ "$(it prefix_cmap 4)" = "$(it prefix_table 4)" ] ||
		warn "cmap_iterate('k12') counts $(it prefix_cmap 4) rows, the table $(it prefix_table 4)"
	log "  cmap $(it iter_cmap 2) ms, seq scan $(it iter_seqscan 2) ms, SQL SRF $(it iter_srf 2) ms, generate_series $(it iter_genseries 2) ms"
}

# --------------------------------------------------------------------------
# 1, 2, 7. Point operations with per-transaction latency
# --------------------------------------------------------------------------
point_ops() {
	log "1/2/7. point operations, $CLIENTS clients, $SECS s each"
	ensure_kmap
	q "SELECT pg_prewarm('kv'), pg_prewarm('kv_pkey')" >/dev/null
	pgb select1 select1 "$CLIENTS" "$N"
	pgb load load "$CLIENTS" "$N"
	pgb pk_lookup pk_lookup "$CLIENTS" "$N"
	pgb store store "$CLIENTS" "$N"
	wait_reclaim
	pgb upsert_sync upsert "$CLIENTS" "$N"
	q "VACUUM kv" >/dev/null
	pgb upsert_async upsert "$CLIENTS" "$N" "-c synchronous_commit=off"
	q "VACUUM kv" >/dev/null
}

# --------------------------------------------------------------------------
# 8. Readers under a concurrent writer; a long-pinned reader
# --------------------------------------------------------------------------
SERIES="$OUT/pinned_series.tsv"
# sampler RUN SECONDS: one cmap_stats() row every 0.5 s into $SERIES
sampler() {
	local run=$1 i t0 now
	t0="$(date +%s%N)"
	for i in $(seq 1 $(( $2 * 2 ))); do
		now="$(date +%s%N)"
		printf '%s\t%s\t%s\t%s\n' "$run" "$(awk -v a="$now" -v b="$t0" 'BEGIN { printf "%.2f", (a - b) / 1e9 }')" \
			"$(cat "$TMPD/phase")" \
			"$(q "SELECT concat_ws(E'\t', version, pinned_snapshots, coalesce(oldest_pinned_version::text, '-'),
			                          retained_bytes, memory_used, reclaim_runs, reclaimed_bytes)
			      FROM cmap_stats()" || echo error)" >> "$SERIES"
		sleep 0.5
	done
}

readers_writer() {
	local wpid
	log "8. readers under a writer"
	ensure_kmap
	pgb rw_reader_alone load 1 "$N"
	# the writer runs through the reader's warm-up and measured run
	pgb_cmd churn 1 "$N" "" "$((WARMUP + SECS))" > "$TMPD/out/rw_writer.txt" 2>&1 &
	wpid=$!
	bg_register "$wpid"
	pgb rw_reader_with_writer load 1 "$N"
	if wait "$wpid"; then
		fact rw.writer_with_reader "$($PY "$TOOL" tps "$TMPD/out/rw_writer.txt")"
	else
		warn "writer pgbench failed: $(grep -m1 ERROR "$TMPD/out/rw_writer.txt" || tail -1 "$TMPD/out/rw_writer.txt")"
	fi
	fact rw.reader_alone "$(getfact tps.rw_reader_alone)"
	fact rw.reader_with_writer "$(getfact tps.rw_reader_with_writer)"
}

pinned_reader() {
	local spid ppid i TAIL=3	# seconds sampled after the writers stop (release and reclaim)
	log "8. writers churn for $SECS s without, then with, a pinned cursor over cmap_iterate()"
	ensure_kmap
	printf 'run\tt\tphase\tversion\tpinned_snapshots\toldest_pinned_version\tretained_bytes\tmemory_used\treclaim_runs\treclaimed_bytes\n' \
		> "$SERIES"
	echo idle > "$TMPD/phase"

	sampler unpinned $((WARMUP + SECS + TAIL + 1)) &
	spid=$!
	bg_register "$spid"
	sleep 0.6
	echo writing > "$TMPD/phase"
	pgb rw_writer_unpinned churn "$CLIENTS" "$N"
	echo after > "$TMPD/phase"
	wait "$spid"

	echo idle > "$TMPD/phase"
	wait_reclaim
	pgrun "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 > "$TMPD/out/pinned.txt" 2>&1 <<EOF &
BEGIN;
DECLARE c CURSOR FOR SELECT key, value FROM cmap_iterate();
FETCH 1 FROM c;
SELECT pg_sleep($WARMUP + $SECS + 2);
CLOSE c;
COMMIT;
EOF
	ppid=$!
	bg_register "$ppid"
	for i in $(seq 1 100); do
		[ "$(q 'SELECT pinned_snapshots FROM cmap_stats()')" -ge 1 ] && break
		sleep 0.1
	done
	[ "$(q 'SELECT pinned_snapshots FROM cmap_stats()')" -ge 1 ] || { warn "the cursor did not pin a version"; return 1; }
	sampler pinned $((WARMUP + SECS + TAIL + 2)) &
	spid=$!
	bg_register "$spid"
	sleep 0.6
	echo writing > "$TMPD/phase"
	pgb rw_writer_pinned churn "$CLIENTS" "$N"
	echo pinned-idle > "$TMPD/phase"
	wait "$ppid" ||
		warn "pinned reader failed: $(grep -m1 ERROR "$TMPD/out/pinned.txt" || tail -1 "$TMPD/out/pinned.txt")"
	echo released > "$TMPD/phase"
	wait "$spid"
	$PY "$TOOL" series "$SERIES" >> "$FACTS"
	fact pin.writer_tps_unpinned "$(getfact tps.rw_writer_unpinned)"
	fact pin.writer_tps_pinned "$(getfact tps.rw_writer_pinned)"
	fact pin.p99_unpinned "$(getfact lat.rw_writer_unpinned.p99)"
	fact pin.p99_pinned "$(getfact lat.rw_writer_pinned.p99)"
	[ "$(getfact pin.retained_bytes_after)" = 0 ] ||
		warn "retained_bytes was $(getfact pin.retained_bytes_after), not 0, ${TAIL}+ s after the pinned cursor closed"
}

# --------------------------------------------------------------------------
# 5. Memory per entry: 11-byte keys, 32-byte values
# --------------------------------------------------------------------------
memory() {
	log "5. memory per entry, $N entries with 11-byte keys and 32-byte values"
	q "SELECT cmap_clear()" >/dev/null
	wait_reclaim
	q "SELECT count(cmap_store('key' || lpad(i::text, 8, '0'), md5(i::text))) FROM generate_series(1, $N) i" >/dev/null
	wait_reclaim
	set -- $(q "SELECT entries, map_bytes, memory_used, free_pool_bytes, tree_height FROM cmap_stats()" | tr '|' ' ')
	fact mem.entries "$1"
	fact mem.map_bytes "$2"
	fact mem.memory_used "$3"
	fact mem.free_pool_bytes "$4"
	fact mem.tree_height "$5"
	fact mem.map_per_entry "$(echo "$2 $1" | awk '{ printf "%.2f", $1 / $2 }')"
	fact mem.used_per_entry "$(echo "$3 $1" | awk '{ printf "%.2f", $1 / $2 }')"
	fact mem.used_without_pool_per_entry "$(echo "$3 $4 $1" | awk '{ printf "%.2f", ($1 - $2) / $3 }')"
	[ "$1" = "$N" ] || warn "memory test: map has $1 entries, expected $N"
	set -- $(q "CREATE UNLOGGED TABLE kv_mem (k text COLLATE \"C\" PRIMARY KEY, v text);
	            INSERT INTO kv_mem SELECT 'key' || lpad(i::text, 8, '0'), md5(i::text) FROM generate_series(1, $N) i;
	            VACUUM kv_mem;
	            SELECT pg_total_relation_size('kv_mem'), pg_relation_size('kv_mem'), count(*) FROM kv_mem;" | tr '|' ' ')
	fact mem.table_bytes "$1"
	fact mem.table_heap_bytes "$2"
	fact mem.rows "$3"
	fact mem.table_per_row "$(echo "$1 $3" | awk '{ printf "%.2f", $1 / $2 }')"
	q "DROP TABLE kv_mem"
	log "  map_bytes/entry $(getfact mem.map_per_entry), table+index/row $(getfact mem.table_per_row)"
}

# --------------------------------------------------------------------------
# 6. Write cost vs map size
# --------------------------------------------------------------------------
map_size() {
	local loaded=0 size hi
	log "6. cmap_store TPS vs map size: $SIZES"
	q "SELECT cmap_clear()" >/dev/null
	wait_reclaim
	for size in $SIZES; do
		while [ "$loaded" -lt "$size" ]; do
			hi=$(( loaded + 1000000 < size ? loaded + 1000000 : size ))
			if ! q "SELECT count(cmap_store('k' || i, 'v' || i)) FROM generate_series($((loaded + 1)), $hi) i" >/dev/null; then
				warn "loading keys $((loaded + 1))..$hi failed; sizes from $size on skipped"
				return 0
			fi
			loaded=$hi
		done
		wait_reclaim
		pgb "size_$size" store "$CLIENTS" "$size"
		fact "size.$size.tps" "$(getfact "tps.size_$size")"
		fact "size.$size.p99" "$(getfact "lat.size_$size.p99")"
		fact "size.$size.memory_used" "$(q 'SELECT memory_used FROM cmap_stats()')"
	done
}

# --------------------------------------------------------------------------
# 9. cmap_mirror trigger overhead (only once the function exists)
# --------------------------------------------------------------------------
mirror() {
	local mirrored k
	if [ "$(q "SELECT count(*) FROM pg_proc WHERE proname = 'cmap_mirror' AND prorettype = 'trigger'::regtype")" = 0 ]; then
		log "9. cmap_mirror trigger overhead: skipped (cmap_mirror not available)"
		fact mirror.status "skipped (cmap_mirror not available)"
		return 0
	fi
	log "9. cmap_mirror trigger overhead"
	fact mirror.status "failed"
	q "SELECT cmap_clear()" >/dev/null
	wait_reclaim
	q "CREATE TABLE mt (k text COLLATE \"C\" PRIMARY KEY, v text);
	   CREATE TRIGGER mt_mirror AFTER INSERT OR UPDATE OR DELETE ON mt
	       FOR EACH ROW EXECUTE FUNCTION cmap_mirror('k', 'mt:');
	   INSERT INTO mt SELECT 'k' || i, 'v' || i FROM generate_series(1, $N) i;
	   VACUUM ANALYZE mt;"
	mirrored="$(q "SELECT count(*) FROM cmap_iterate('mt:')")"
	[ "$mirrored" = "$N" ] || warn "cmap_mirror mirrored $mirrored of $N rows"
	q "ALTER TABLE mt DISABLE TRIGGER mt_mirror; VACUUM mt; CHECKPOINT;"
	pgb mirror_without_async mirror_upsert "$CLIENTS" "$N" "-c synchronous_commit=off"
	q "VACUUM mt; CHECKPOINT;"
	pgb mirror_without_sync mirror_upsert "$CLIENTS" "$N"
	q "ALTER TABLE mt ENABLE TRIGGER mt_mirror; VACUUM mt; CHECKPOINT;"
	pgb mirror_with_async mirror_upsert "$CLIENTS" "$N" "-c synchronous_commit=off"
	q "VACUUM mt; CHECKPOINT;"
	pgb mirror_with_sync mirror_upsert "$CLIENTS" "$N"
	for k in without_async without_sync with_async with_sync; do
		fact "mirror.$k" "$(getfact "tps.mirror_$k")"
	done
	fact mirror.status ok
}

run_section bulk_load
run_section iteration
run_section point_ops
run_section readers_writer
run_section pinned_reader
run_section memory
run_section map_size
run_section mirror
fact meta.loadavg_end "$(cut -d' ' -f1-3 /proc/loadavg)"

# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$TMPD/data" -m fast -w stop >/dev/null
STARTED=0
cp "$FACTS" "$OUT/facts.tsv"
$PY "$TOOL" report "$OUT/facts.tsv" "$OUT" | tee "$OUT/summary.txt"
gnuplot "$OUT/ratios.gp" 2>"$TMPD/gnuplot.err" || { cat "$TMPD/gnuplot.err" >&2; die "gnuplot failed"; }
log "wrote $OUT/results.json, $OUT/ratios.png, $OUT/summary.txt"
if grep -q $'^failed\.\|^warn\.[0-9]*\tmeasurement' "$OUT/facts.tsv"; then
	cp "$TMPD/server.log" "$OUT/server.log" 2>/dev/null || true
	log "some measurements failed (see the warnings above; server log in $OUT/server.log)"
	exit 1
fi
