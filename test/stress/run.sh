#!/usr/bin/env bash
#
# test/stress/run.sh: the multi-session stress test (stress.py) and the
# model-based test (model.py) of cmapext, against a throwaway cluster.
#
# Run as an unprivileged user (PostgreSQL refuses root) with the PostgreSQL
# 15 binaries in PATH and the extension installed; scripts/test-all.sh calls
# it as the postgres user.  The cluster lives in a temporary directory,
# listens only on a Unix socket in that directory, preloads cmapext with
# cmapext.max_memory = 256MB, and is stopped and removed on exit.
#
# Environment:
#   STRESS_SECONDS  duration of the stress test (default 60)
#   MODEL_SECONDS   time budget of the model-based test (default 30)
#   MODEL_SEED      base seed of the model-based test (default: fixed)
#   KEEP_CLUSTER=1  leave the temporary directory behind for inspection
#
# Exits non-zero if either test reports a violation or an error, or if the
# server log shows a crash.
#
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
python=/usr/bin/python3
export STRESS_SECONDS="${STRESS_SECONDS:-60}"
export MODEL_SECONDS="${MODEL_SECONDS:-30}"

for tool in initdb pg_ctl psql; do
	command -v "$tool" >/dev/null || { echo "run.sh: $tool not in PATH" >&2; exit 2; }
done
"$python" -c 'import psycopg2' || { echo "run.sh: python3-psycopg2 is missing" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cmapext-stress.XXXXXX")
data="$tmp/data"
log="$tmp/server.log"
started=0

cleanup() {
	local rc=$?
	if [ $started -eq 1 ]; then
		pg_ctl -D "$data" -m fast -w stop >/dev/null 2>&1 || pg_ctl -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
	fi
	if [ $rc -ne 0 ] && [ -f "$log" ]; then
		echo "---- last lines of the server log ($log)"
		tail -n 60 "$log"
	fi
	if [ "${KEEP_CLUSTER:-0}" = "1" ]; then
		echo "cluster kept in $tmp"
	else
		rm -rf "$tmp"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A port nobody listens on (we only use the Unix socket in $tmp, but keep
# the port unique anyway in case someone enables TCP).
port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

initdb -D "$data" -A trust -E UTF8 --locale=C.UTF-8 --no-sync >"$tmp/initdb.log" 2>&1 ||
	{ cat "$tmp/initdb.log"; exit 1; }
cat >>"$data/postgresql.conf" <<EOF
shared_preload_libraries = 'cmapext'
cmapext.max_memory = 256MB
max_connections = 40
listen_addresses = ''
unix_socket_directories = '$tmp'
port = $port
fsync = off
log_line_prefix = '%m [%p] %q%a '
EOF

pg_ctl -D "$data" -l "$log" -w -t 60 start >/dev/null
started=1

export PGHOST="$tmp" PGPORT="$port" PGUSER="$(id -un)"
psql -X -q -v ON_ERROR_STOP=1 -d postgres <<'EOF'
CREATE DATABASE cmap_stress;
CREATE DATABASE cmap_model;
\c cmap_stress
CREATE EXTENSION cmapext;
\c cmap_model
CREATE EXTENSION cmapext;
EOF

status=0
echo "==== stress test (${STRESS_SECONDS} s)"
PGDATABASE=cmap_stress "$python" "$here/stress.py" || status=1

echo "==== model-based test (${MODEL_SECONDS} s)"
PGDATABASE=cmap_model "$python" "$here/model.py" || status=1

# A crashed backend restarts the cluster, which the tests might not notice.
crash='PANIC|TRAP:|terminated by signal|server process .* exited with exit code|database system is in recovery mode'
if grep -E "$crash" "$log" >/dev/null; then
	echo "run.sh: the server log shows a crash:"
	grep -E "$crash" "$log" | head -20
	status=1
fi

if [ $status -eq 0 ]; then
	echo "==== stress and model tests passed"
else
	echo "==== stress or model test FAILED"
fi
exit $status
