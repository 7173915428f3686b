#!/usr/bin/env bash
#
# scripts/sanitize.sh: run the test suites against instrumented builds.
#
#   scripts/sanitize.sh ubsan      UndefinedBehaviorSanitizer build, all suites
#   scripts/sanitize.sh valgrind   the pg_regress suites on a server run under
#                                  valgrind memcheck
#   scripts/sanitize.sh            both
#
# Run as root on Debian 12.  The instrumented library replaces the
# installed one for the duration of the run, and the normal build is
# reinstalled at the end, whatever happens: do not run it while other
# servers use the installed library.
#
# Why not AddressSanitizer: PostgreSQL is not built with it, and preloading
# its runtime into uninstrumented PostgreSQL programs deadlocks in glibc's
# gettext lock at startup.  UBSan needs no preloading (its runtime is a
# dependency of the library), and valgrind checks every memory access of
# the server, ours included.
#
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_root
ensure_build_packages libipc-run-perl valgrind

modes=("$@")
[ ${#modes[@]} -eq 0 ] && modes=(ubsan valgrind)

restore() {
	log "reinstalling the normal build"
	make -C "$CMAP_TOP" clean >/dev/null
	make -C "$CMAP_TOP" >/dev/null
	make -C "$CMAP_TOP" install >/dev/null
}
trap restore EXIT

logs=$(mktemp -d /tmp/cmapext-sanitize.XXXXXX)
chmod 777 "$logs"
status=0

run_ubsan() {
	log "UBSan build (-fsanitize=undefined, no recovery)"
	make -C "$CMAP_TOP" clean >/dev/null
	make -C "$CMAP_TOP" PG_CFLAGS="-fsanitize=undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g" \
		SHLIB_LINK="-fsanitize=undefined" >/dev/null
	make -C "$CMAP_TOP" install >/dev/null
	export UBSAN_OPTIONS="print_stacktrace=1:log_path=$logs/ubsan"
	for kind in regress isolation tap; do
		log "UBSan: $kind"
		if ! "$CMAP_TOP/scripts/run-suite.sh" "$kind" >"$logs/ubsan-$kind.out" 2>&1; then
			echo "suite $kind FAILED (output in $logs/ubsan-$kind.out)"
			tail -30 "$logs/ubsan-$kind.out"
			status=1
		else
			grep -E "tests passed|Result:" "$logs/ubsan-$kind.out" || true
		fi
	done
	unset UBSAN_OPTIONS
	if ls "$logs"/ubsan.* >/dev/null 2>&1; then
		log "UBSan reports"
		head -40 "$logs"/ubsan.*
		status=1
	else
		echo "no UBSan report"
	fi
}

run_valgrind() {
	log "valgrind memcheck: pg_regress suites on a server under valgrind"
	make -C "$CMAP_TOP" clean >/dev/null
	make -C "$CMAP_TOP" PG_CFLAGS="-O0 -g" >/dev/null
	make -C "$CMAP_TOP" install >/dev/null

	local dir=$logs/vg port
	port=$(free_port)
	mkdir -p "$dir"
	chown postgres:postgres "$dir"
	run_pg initdb -D "$dir/data" -A trust -U postgres >/dev/null
	cat "$CMAP_TOP/test/cmapext.conf" >> "$dir/data/postgresql.conf"
	{
		echo "port = $port"
		echo "unix_socket_directories = '$dir'"
		echo "listen_addresses = ''"
		echo "autovacuum = off"
	} >> "$dir/data/postgresql.conf"
	run_pg bash -c "valgrind --quiet --trace-children=yes --track-origins=yes \
		--num-callers=30 --log-file='$dir/vg.%p' \
		postgres -D '$dir/data' > '$dir/server.log' 2>&1 &"
	for _ in $(seq 1 120); do
		run_pg pg_isready -h "$dir" -p "$port" -q && break
		sleep 1
	done

	run_pg createdb -h "$dir" -p "$port" contrib_regression

	local work
	work=$(mktemp -d /tmp/cmapext-vg-suite.XXXXXX)
	cp -a "$CMAP_TOP"/. "$work"/
	rm -rf "$work/.git" "$work/results"
	chown -R postgres:postgres "$work"
	chmod 755 "$work"
	local tests
	tests=$(cd "$CMAP_TOP/sql" && ls ./*.sql | sed 's|^\./||; s|\.sql$||' | tr '\n' ' ')
	if ! (run_pg "$PG_BIN/../lib/pgxs/src/test/regress/pg_regress" \
			--inputdir="$work" --outputdir="$work" --bindir="$PG_BIN" --use-existing \
			--host="$dir" --port="$port" --dbname=contrib_regression $tests \
			>"$logs/valgrind-regress.out" 2>&1); then
		echo "pg_regress under valgrind FAILED (output in $logs/valgrind-regress.out)"
		tail -20 "$logs/valgrind-regress.out"
		[ -f "$work/regression.diffs" ] && head -50 "$work/regression.diffs"
		status=1
	else
		grep -E "tests passed" "$logs/valgrind-regress.out" || true
	fi
	run_pg pg_ctl -D "$dir/data" -m fast -w -t 300 stop >/dev/null 2>&1 || true
	rm -rf "$work"

	# errors in cmapext code (top frames or origin of the bad value)
	log "valgrind reports"
	if ! /usr/bin/python3 "$CMAP_TOP/scripts/vgfilter.py" "$dir"/vg.*; then
		status=1
	fi
}

for m in "${modes[@]}"; do
	case "$m" in
		ubsan) run_ubsan ;;
		valgrind) run_valgrind ;;
		*) echo "unknown mode $m" >&2; exit 2 ;;
	esac
done
echo "logs in $logs"
exit $status
