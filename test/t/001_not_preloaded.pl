
# Copyright (c) 2026, cmapext developers
#
# 001_not_preloaded.pl
#	cmapext needs shared_preload_libraries.  On a server that does not
#	preload it:
#	  - CREATE EXTENSION cmapext still succeeds;
#	  - every SQL function of the extension (the 13 of the API, plus the
#	    cmap_mirror() trigger when the extension has it), called with valid
#	    arguments by a superuser, fails with SQLSTATE 55000, a message and a
#	    hint naming shared_preload_libraries, and the session goes on;
#	then, after adding the library to shared_preload_libraries and
#	restarting, the very same calls work and return the right values.
#	The test also checks that it calls every function the extension has,
#	so a new function without a check here makes it fail.

use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('not_preloaded');
$node->init;
# deliberately no shared_preload_libraries
$node->start;

is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'),
	'', 'cmapext is not preloaded');

# CREATE EXTENSION works without the library being preloaded (it loads
# the library to validate the C functions: _PG_init must cope with that).
my ($cr_ret, $cr_out, $cr_err) =
  $node->psql('postgres', 'CREATE EXTENSION cmapext');
is($cr_ret, 0, 'CREATE EXTENSION succeeds without preloading');
is($cr_err, '', 'CREATE EXTENSION reports no error');

# Functions that belong to the extension.
my $ext_functions_sql = q{
SELECT string_agg(p.proname, ',' ORDER BY p.proname)
FROM pg_proc p
JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
JOIN pg_extension e ON d.refclassid = 'pg_extension'::regclass
	AND d.refobjid = e.oid
WHERE e.extname = 'cmapext' AND d.deptype = 'e'};

# One valid call of each SQL function, in the order they run below, with
# the result expected once the library is preloaded (undef: checked
# separately).  Each write runs in its own autocommit transaction.
my @calls = (
	[ 'cmap_store', q{SELECT cmap_store('k', 'v')}, '' ],    # void
	[ 'cmap_load', q{SELECT cmap_load('k')}, 'v' ],
	[ 'cmap_delete', q{SELECT cmap_delete('k')}, 't' ],
	[ 'cmap_swap', q{SELECT cmap_swap('k', 'w')}, '' ],      # was absent: NULL
	[ 'cmap_load_or_store', q{SELECT cmap_load_or_store('k2', 'a')}, 'a' ],
	[
		'cmap_compare_and_swap',
		q{SELECT cmap_compare_and_swap('k', 'w', 'x')}, 't'
	],
	[
		'cmap_compare_and_delete',
		q{SELECT cmap_compare_and_delete('k2', 'a')}, 't'
	],
	[ 'cmap_increment', q{SELECT cmap_increment('n', 5)}, '5' ],
	[ 'cmap_clear', q{SELECT cmap_clear()}, '2' ],           # 'k' and 'n'
	[ 'cmap_count', q{SELECT cmap_count()}, '0' ],
	[ 'cmap_version', q{SELECT cmap_version()}, undef ],
	[ 'cmap_iterate', q{SELECT * FROM cmap_iterate('k')}, '' ],
	[ 'cmap_stats', q{SELECT * FROM cmap_stats()}, undef ],
	# the trigger: fired by an INSERT into a mirrored table (set up below)
	[ 'cmap_mirror', q{INSERT INTO mirrored VALUES (1, 'a')}, '' ],);
# number of calls above that change the map (store, delete, swap,
# load_or_store, compare_and_swap, compare_and_delete, increment, clear,
# and the mirrored INSERT)
my $nwrites = 9;

my %tested = map { $_->[0] => 1 } @calls;
my @api = sort keys %tested;

SKIP:
{
	skip 'CREATE EXTENSION failed without preloading', 5 * scalar(@calls) + 4
	  if $cr_ret != 0;

	# Every function of the extension is called below; cmap_mirror only if
	# this version of the extension has it.
	my @have = split /,/, $node->safe_psql('postgres', $ext_functions_sql);
	my @untested = grep { !$tested{$_} } @have;
	is_deeply(\@untested, [], 'this test calls every function of the extension');
	cmp_ok(scalar(@have), '>=', 13, 'the extension has the 13 API functions');

	$node->safe_psql(
		'postgres', q{
CREATE TABLE mirrored (id int PRIMARY KEY, v text);
CREATE TRIGGER mirror AFTER INSERT OR UPDATE OR DELETE ON mirrored
  FOR EACH ROW EXECUTE FUNCTION cmap_mirror('id', 'm:');
}) if grep { $_ eq 'cmap_mirror' } @have;

	# Every call fails cleanly with 55000 and a useful hint.
	foreach my $c (@calls)
	{
		my ($name, $sql) = @$c;
	  SKIP:
		{
			skip "the extension has no $name", 5
			  unless grep { $_ eq $name } @have;
			my ($ret, $stdout, $stderr) =
			  $node->psql('postgres', "\\set VERBOSITY verbose\n$sql;");
			is($ret, 3, "$name fails when the library is not preloaded");
			like($stderr, qr/ERROR:\s+55000:/, "$name reports SQLSTATE 55000");
			like(
				$stderr,
				qr/ERROR:.*shared_preload_libraries/,
				"$name error message names shared_preload_libraries");
			like(
				$stderr,
				qr/HINT:.*shared_preload_libraries/,
				"$name hint names shared_preload_libraries");
			is($stdout, '', "$name returns nothing");
		}
	}
	is($node->safe_psql('postgres', 'SELECT count(*) FROM mirrored'),
		'0', 'the mirrored INSERT was rolled back by the error')
	  if grep { $_ eq 'cmap_mirror' } @have;

	# Inside a transaction block: the error can be rolled back to a
	# savepoint and the transaction goes on.
	my ($ret, $stdout, $stderr) = $node->psql(
		'postgres', q{
\set VERBOSITY verbose
BEGIN;
SAVEPOINT s;
SELECT cmap_store('k', 'v');
ROLLBACK TO SAVEPOINT s;
SELECT 'still alive';
COMMIT;
},
		on_error_stop => 0);
	like($stderr, qr/ERROR:\s+55000:/, 'error inside a transaction is 55000');
	is($stdout, 'still alive', 'the transaction goes on after the 55000 error');
}

# Now preload the library and restart: the same calls work.
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'cmapext'\ncmapext.max_memory = 8MB\n");
$node->restart;
is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'),
	'cmapext', 'cmapext is preloaded after the restart');

# The extension created before the restart is used as is.  (IF NOT EXISTS
# and the mirrored table are only there so that these checks still run if
# the steps without preloading failed.)
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION IF NOT EXISTS cmapext;
CREATE TABLE IF NOT EXISTS mirrored (id int PRIMARY KEY, v text);
CREATE OR REPLACE TRIGGER mirror AFTER INSERT OR UPDATE OR DELETE ON mirrored
  FOR EACH ROW EXECUTE FUNCTION cmap_mirror('id', 'm:');
});
is( $node->safe_psql('postgres', $ext_functions_sql),
	join(',', @api),
	'the extension has exactly the functions this test calls');

my $v0 = $node->safe_psql('postgres', 'SELECT cmap_version()');
like($v0, qr/^\d+$/, 'cmap_version works');

foreach my $c (@calls)
{
	my ($name, $sql, $expect) = @$c;
	my ($r, $out, $err) =
	  $node->psql('postgres', "\\set VERBOSITY verbose\n$sql;");
	is($r, 0, "$name works once the library is preloaded");
	is($err, '', "$name reports no error");
	is($out, $expect, "$name returns the right value") if defined $expect;
}

is($node->safe_psql('postgres', 'SELECT cmap_version()'),
	$v0 + $nwrites, 'each committed write published exactly one version');
is( $node->safe_psql('postgres', q{SELECT cmap_load('m:1')}),
	'{"id":1,"v":"a"}',
	'the mirror trigger stored the inserted row');

my $stats = $node->safe_psql('postgres',
	q{SELECT version, entries, memory_limit, pinned_snapshots,
			 oldest_pinned_version IS NULL, databases
	  FROM cmap_stats()});
is( $stats,
	join('|', $v0 + $nwrites, 1, 8 * 1024 * 1024, 0, 't', 1),
	'cmap_stats describes the map after the calls');

# Writes and reads go together again.
is( $node->safe_psql(
		'postgres', q{
SELECT cmap_store('a', '1');
SELECT cmap_store('b', '2');
SELECT string_agg(key || '=' || value, ',' ORDER BY key) FROM cmap_iterate();
}),
	"\n\na=1,b=2,m:1=" . '{"id":1,"v":"a"}',
	'the map is usable after the restart');

$node->stop;
done_testing();
