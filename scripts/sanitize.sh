#!/usr/bin/env bash
#
# scripts/sanitize.sh: run the test suites against a build of cmapext with
# AddressSanitizer and UndefinedBehaviorSanitizer.
#
# Run as root on Debian 12.  The sanitized library replaces the installed
# one for the duration of the run (servers started by the suites load it),
# and the normal build is reinstalled at the end, whatever happens.  Do not
# run it while other servers use the installed library.
#
# PostgreSQL itself is not instrumented: the ASan runtime is preloaded into
# every process (LD_PRELOAD), leak detection is off (PostgreSQL frees memory
# by dropping whole contexts and processes), and any report from our code
# fails the run (UBSan: -fno-sanitize-recover; ASan: reports in the logs).
#
# Usage: scripts/sanitize.sh [regress|isolation|tap ...]   (default: all three)
#
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_root
ensure_build_packages libipc-run-perl

kinds=("$@")
[ ${#kinds[@]} -eq 0 ] && kinds=(regress isolation tap)

asan_rt=$(gcc -print-file-name=libasan.so)
[ -f "$asan_rt" ] || { echo "libasan not found (gcc -print-file-name=libasan.so)" >&2; exit 1; }

restore() {
	log "reinstalling the normal build"
	make -C "$CMAP_TOP" clean >/dev/null
	make -C "$CMAP_TOP" >/dev/null
	make -C "$CMAP_TOP" install >/dev/null
}
trap restore EXIT

log "building with -fsanitize=address,undefined"
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
make -C "$CMAP_TOP" clean >/dev/null
make -C "$CMAP_TOP" PG_CFLAGS="$san -O1 -g" SHLIB_LINK="-fsanitize=address,undefined" >/dev/null
make -C "$CMAP_TOP" install >/dev/null

logs=$(mktemp -d /tmp/cmapext-sanitize.XXXXXX)
chmod 777 "$logs"
export LD_PRELOAD="$asan_rt"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:log_path=$logs/asan:allow_user_segv_handler=1:handle_segv=0"
export UBSAN_OPTIONS="print_stacktrace=1:log_path=$logs/ubsan"

status=0
for kind in "${kinds[@]}"; do
	log "suite: $kind"
	if ! "$CMAP_TOP/scripts/run-suite.sh" "$kind" >"$logs/$kind.out" 2>&1; then
		echo "suite $kind FAILED (output in $logs/$kind.out)"
		tail -30 "$logs/$kind.out"
		status=1
	else
		grep -E "tests passed|Result:" "$logs/$kind.out" || true
	fi
done
unset LD_PRELOAD

# Sanitizer reports land in $logs/asan.PID / ubsan.PID; only those that
# involve cmapext count (PostgreSQL itself is not instrumented).
reports=$(grep -l -E "cmap_|cmapext" "$logs"/asan.* "$logs"/ubsan.* 2>/dev/null || true)
if [ -n "$reports" ]; then
	log "sanitizer reports"
	for r in $reports; do echo "--- $r"; head -40 "$r"; done
	status=1
else
	log "no sanitizer report involving cmapext"
fi
echo "logs in $logs"
exit $status
