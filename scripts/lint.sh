#!/usr/bin/env bash
#
# scripts/lint.sh: static analysis of src/ with cppcheck and clang-tidy.
# Exits non-zero on any finding.  Run as root to let it install the tools.
#
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$CMAP_TOP"

[ "$(id -u)" -eq 0 ] && ensure_packages cppcheck clang-tidy postgresql-server-dev-$PG_MAJOR
inc=$($PG_CONFIG --includedir-server)
status=0

echo "cppcheck:"
if ! cppcheck --enable=warning,performance,portability --std=c99 --quiet \
	--error-exitcode=1 --inline-suppr --suppress=missingIncludeSystem \
	-D__GNUC__ -I src -I "$inc" src/*.c; then
	status=1
fi

echo "clang-tidy:"
checks='-*,clang-analyzer-*,-clang-analyzer-security.insecureAPI.*,bugprone-*'
checks+=',-bugprone-easily-swappable-parameters,-bugprone-reserved-identifier'
checks+=',-bugprone-macro-parentheses,-bugprone-narrowing-conversions'
checks+=',-bugprone-sizeof-expression,-bugprone-branch-clone'
checks+=',-bugprone-implicit-widening-of-multiplication-result'
checks+=',-bugprone-assignment-in-if-condition'
out=$(clang-tidy src/*.c --quiet -checks="$checks" -- -I src -I "$inc" -D_GNU_SOURCE 2>&1 |
	grep -E "^$CMAP_TOP/src/.*(warning|error):" || true)
if [ -n "$out" ]; then
	echo "$out"
	status=1
fi
[ $status -eq 0 ] && echo "static analysis: clean"
exit $status
