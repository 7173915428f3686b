#!/usr/bin/env bash
#
# scripts/run-suite.sh: run one kind of test (or a few tests) against the
# installed extension, in a private copy of the tree, as the postgres user.
#
#   scripts/run-suite.sh regress [name ...]     sql/NAME.sql vs expected/NAME.out
#   scripts/run-suite.sh isolation [name ...]   test/specs/NAME.spec
#   scripts/run-suite.sh tap [test/t/FILE.pl ...]
#
# Actual outputs are copied back to ./results (regress) and ./output_iso
# (isolation), both git-ignored, so that new expected files can be reviewed
# and created from them.  Assumes `make install` has been run.
#
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
PG_BIN=/usr/lib/postgresql/15/bin
kind="${1:?usage: $0 regress|isolation|tap [names...]}"
shift

work=$(mktemp -d /tmp/cmapext-suite.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -a "$here"/. "$work"/
rm -rf "$work"/.git "$work"/results "$work"/output_iso "$work"/tmp_check*
chown -R postgres:postgres "$work"
chmod 755 "$work"

# Start in / : the caller's directory may be private to root.
run_pg() { (cd / && runuser -u postgres -- env PATH="$PG_BIN:$PATH" "$@"); }
rc=0
case "$kind" in
	regress)
		tests="${*:-$(cd "$here/sql" && ls ./*.sql | sed 's|^\./||; s|\.sql$||' | tr '\n' ' ')}"
		run_pg make -s -C "$work" installcheck PG_CONFIG=$PG_BIN/pg_config \
			REGRESS="$tests" ISOLATION= TAP_TESTS= || rc=$?
		rm -rf "$here/results"; cp -a "$work/results" "$here/results" 2>/dev/null || true
		[ -f "$work/regression.diffs" ] && cat "$work/regression.diffs"
		;;
	isolation)
		tests="${*:-$(cd "$here/test/specs" && ls ./*.spec | sed 's|^\./||; s|\.spec$||' | tr '\n' ' ')}"
		run_pg make -s -C "$work" installcheck PG_CONFIG=$PG_BIN/pg_config \
			REGRESS= ISOLATION="$tests" TAP_TESTS= || rc=$?
		rm -rf "$here/output_iso"; cp -a "$work/output_iso" "$here/output_iso" 2>/dev/null || true
		[ -f "$work/output_iso/regression.diffs" ] && cat "$work/output_iso/regression.diffs"
		;;
	tap)
		tests="${*:-test/t/*.pl}"
		run_pg make -s -C "$work" installcheck PG_CONFIG=$PG_BIN/pg_config \
			REGRESS= ISOLATION= PROVE_TESTS="$tests" PROVE_FLAGS=--verbose || rc=$?
		for f in "$work"/tmp_check/log/*; do
			[ -f "$f" ] && [ $rc -ne 0 ] && { echo "--- $f"; tail -50 "$f"; }
		done
		;;
	*)
		echo "unknown kind: $kind" >&2
		exit 2
		;;
esac
exit $rc
