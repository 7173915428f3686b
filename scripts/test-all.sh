#!/usr/bin/env bash
#
# scripts/test-all.sh: set up everything and run every cmapext test suite.
#
# Run as root on Debian 12 (or with sudo).  It installs what is missing with
# apt-get (PostgreSQL 15 server and headers, the TAP test modules, a Python
# driver for the stress test), builds and installs the extension, then runs
# the pg_regress, isolation, TAP and stress suites as the unprivileged
# "postgres" user (PostgreSQL refuses to run as root), each against its own
# throwaway server that preloads the library.
#
# Environment:
#   PG_CFLAGS      extra compiler flags (CI passes -Werror)
#   STRESS_SECONDS duration of the multi-session stress test (default 60)
#   SKIP_STRESS=1  skip the stress test
#
set -euo pipefail

source "$(dirname "$0")/lib.sh"
here="$CMAP_TOP"
require_root

# --- 1. packages ------------------------------------------------------------
log "checking packages"
ensure_build_packages libipc-run-perl python3 python3-psycopg2

# --- 2. build and install ---------------------------------------------------
log "building"
build_and_install

# --- 3. run the suites as postgres in a private copy of the tree ------------
work=$(mktemp -d /tmp/cmapext-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -a "$here"/. "$work"/
rm -rf "$work"/.git
chown -R postgres:postgres "$work"
chmod 755 "$work"

status=0

log "pg_regress and isolation suites"
if ! run_pg make -C "$work" installcheck PG_CONFIG="$PG_CONFIG"; then
	status=1
	for f in "$work"/regression.diffs "$work"/output_iso/regression.diffs; do
		[ -f "$f" ] && { echo "--- $f"; cat "$f"; }
	done
fi

log "static analysis (cppcheck, clang-tidy)"
if ! "$here/scripts/lint.sh"; then
	status=1
fi

if [ "${SKIP_STRESS:-0}" != "1" ] && [ -x "$work/test/stress/run.sh" ]; then
	log "stress test (${STRESS_SECONDS:-60} s)"
	if ! run_pg env STRESS_SECONDS="${STRESS_SECONDS:-60}" "$work/test/stress/run.sh"; then
		status=1
	fi
fi

if [ $status -eq 0 ]; then
	log "all suites passed"
else
	log "FAILURES (see above)"
	# keep the logs of failed runs for inspection
	keep=/tmp/cmapext-test-failed
	rm -rf "$keep"; cp -a "$work" "$keep"; echo "logs kept in $keep"
fi
exit $status
