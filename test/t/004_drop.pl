
# Copyright (c) 2026, cmapext developers
#
# 004_drop.pl
#	What DROP DATABASE and DROP EXTENSION do to a map.
#
#	DROP DATABASE releases the database's map: seen from another database,
#	cmap_stats().databases goes back down and memory_used falls back to
#	its previous level (the memory of the remaining maps plus free pool
#	nodes); the other database's map is untouched.  Also with
#	DROP DATABASE ... WITH (FORCE) while a session of the dropped database
#	pins a version through an open cursor.  A new database of the same name
#	starts with an empty map at version 0, and map slots are reused
#	(more databases created and dropped than cmapext.max_databases).
#
#	DROP EXTENSION forgets the contents, transactionally: rolled back, the
#	map is intact.  Committed while another session iterates through a
#	cursor, the iterating session still reads the complete old contents;
#	afterwards CREATE EXTENSION gives an empty map whose versions keep
#	increasing, and the memory of the old contents is released.

use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('drop');
$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'cmapext'\n"
	  . "cmapext.max_memory = 32MB\n"
	  . "cmapext.max_databases = 4\n");
$node->start;

# cmap_stats() of a database, as a hash.
sub stats
{
	my ($db) = @_;
	my $out = $node->safe_psql($db,
		q{SELECT version, entries, memory_used, free_pool_bytes, databases,
				 pinned_snapshots, retained_bytes, memory_limit
		  FROM cmap_stats()});
	my %s;
	@s{qw(version entries memory_used free_pool databases pinned retained limit)}
	  = split /\|/, $out;
	$s{live} = $s{memory_used} - $s{free_pool};    # bytes held by maps
	return \%s;
}

# Store n keys "prefix000001" .. with ~100-byte values, in one transaction.
sub load
{
	my ($db, $prefix, $n) = @_;
	$node->safe_psql(
		$db, qq{
SELECT count(cmap_store(format('$prefix%s', lpad(i::text, 6, '0')),
						repeat('v', 100) || i))
FROM generate_series(1, $n) i;
});
}

# A PL/pgSQL function that reads the rest of an open cursor over
# (key, value, version) and checks that row i (from $first on) is the
# original "prefix i" row of version v.  Returns "rows|bad|first bad row".
my $check_cursor_sql = q{
CREATE FUNCTION check_cursor(cname text, prefix text, first int, v bigint,
	OUT nrows int, OUT nbad int, OUT first_bad text)
LANGUAGE plpgsql AS $$
DECLARE
	cur refcursor := cname;
	r record;
	i int := first;
BEGIN
	nrows := 0;
	nbad := 0;
	LOOP
		FETCH cur INTO r;
		EXIT WHEN NOT FOUND;
		nrows := nrows + 1;
		IF r.key IS DISTINCT FROM format('%s%s', prefix, lpad(i::text, 6, '0'))
		   OR r.value IS DISTINCT FROM repeat('v', 100) || i
		   OR r.version IS DISTINCT FROM v
		THEN
			nbad := nbad + 1;
			IF first_bad IS NULL THEN
				first_bad := format('row %s: %s|%s|%s', i, r.key, r.value, r.version);
			END IF;
		END IF;
		i := i + 1;
	END LOOP;
END $$;
};

# A cursor that streams the map (target-list SRF: not materialised).
my $declare_cursor = q{DECLARE c CURSOR FOR
  SELECT (r).key, (r).value, (r).version
  FROM (SELECT cmap_iterate() AS r OFFSET 0) s};

# The observer database keeps a small map of its own.
$node->safe_psql('postgres', 'CREATE EXTENSION cmapext');
load('postgres', 'keep', 100);
my $s0 = stats('postgres');
is($s0->{databases}, 1, 'one map in use');
is($s0->{entries}, 100, 'the observer map has its keys');

############################################################################
# 1. DROP DATABASE
############################################################################

$node->safe_psql('postgres', 'CREATE DATABASE big');
$node->safe_psql('big', 'CREATE EXTENSION cmapext');
load('big', 'big', 50000);
my $s_big = stats('big');
is($s_big->{entries}, 50000, 'the big map is loaded');

my $s1 = stats('postgres');
is($s1->{databases}, 2, 'two maps in use');
cmp_ok($s1->{live}, '>=', $s0->{live} + 4 * 1024 * 1024,
	'the big map uses several megabytes');
is($s1->{entries}, 100, 'stats of the observer describe its own map');

$node->safe_psql('postgres', 'DROP DATABASE big');
ok( $node->poll_query_until(
		'postgres',
		"SELECT databases = 1 AND memory_used - free_pool_bytes = $s0->{live} FROM cmap_stats()"
	),
	'DROP DATABASE released the map and its memory');
my $s2 = stats('postgres');
note "memory_used: before $s0->{memory_used}, with big $s1->{memory_used}, "
  . "after drop $s2->{memory_used} (free pool $s2->{free_pool})";
cmp_ok($s2->{memory_used}, '<=', $s0->{memory_used} + $s2->{limit} / 16,
	'memory_used is back near its previous level');
is($s2->{entries}, 100, 'the observer map still has its keys');
is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM cmap_iterate('keep') WHERE value = repeat('v', 100) || ltrim(substr(key, 5), '0')}),
	'100',
	'the observer map is intact');

# A new database of the same name starts with a fresh, empty map.
$node->safe_psql('postgres', 'CREATE DATABASE big');
$node->safe_psql('big', 'CREATE EXTENSION cmapext');
is( $node->safe_psql('big',
		'SELECT cmap_count(), cmap_version(), count(*) FROM cmap_iterate()'),
	'0|0|0',
	'a re-created database starts with an empty map at version 0');
is(stats('postgres')->{databases}, 2, 'the new database has a map again');
$node->safe_psql('postgres', 'DROP DATABASE big');
ok( $node->poll_query_until(
		'postgres', 'SELECT databases = 1 FROM cmap_stats()'),
	'and releases it when dropped');

# DROP DATABASE WITH (FORCE) while a session of that database pins a
# version with an open cursor.
$node->safe_psql('postgres', 'CREATE DATABASE big2');
$node->safe_psql('big2', 'CREATE EXTENSION cmapext');
load('big2', 'big', 50000);
my $pinner = $node->background_psql('big2');
$pinner->query_safe("BEGIN; $declare_cursor;");
like($pinner->query_safe('FETCH 1 FROM c'),
	qr/^big000001\|/, 'a session of big2 is iterating');
load('big2', 'big', 50000);    # rewrite: the pinned version is retained
my $s_b2 = stats('big2');
is($s_b2->{pinned}, 1, 'big2 has one pinned version');
cmp_ok($s_b2->{retained}, '>', 0, 'big2 retains the pinned version');

$node->safe_psql('postgres', 'DROP DATABASE big2 WITH (FORCE)');
eval { $pinner->quit; };    # its backend was terminated
ok( $node->poll_query_until(
		'postgres',
		"SELECT databases = 1 AND memory_used - free_pool_bytes = $s0->{live} FROM cmap_stats()"
	),
	'DROP DATABASE WITH (FORCE) released the map, pinned version included');
is(stats('postgres')->{pinned}, 0, 'no pin left in the observer map');

# Map slots are reused: with cmapext.max_databases = 4, create, use and
# drop a database more times than there are slots.
for my $i (1 .. 6)
{
	$node->safe_psql('postgres', "CREATE DATABASE cycle$i");
	$node->safe_psql('cycle' . $i,
		"CREATE EXTENSION cmapext; SELECT cmap_store('k', '$i');");
	is($node->safe_psql('cycle' . $i, q{SELECT cmap_load('k'), cmap_version()}),
		"$i|1", "database cycle$i has its own map");
	$node->safe_psql('postgres', "DROP DATABASE cycle$i");
	ok( $node->poll_query_until(
			'postgres', 'SELECT databases = 1 FROM cmap_stats()'),
		"the map of cycle$i is released");
}
is(stats('postgres')->{live}, $s0->{live},
	'no memory left behind by the dropped databases');

############################################################################
# 2. DROP EXTENSION
############################################################################

$node->safe_psql('postgres', 'CREATE DATABASE ext');
$node->safe_psql('ext', 'CREATE EXTENSION cmapext');
$node->safe_psql('ext', $check_cursor_sql);
my $n = 5000;
load('ext', 'key', $n);
my $v_loaded = $node->safe_psql('ext', 'SELECT cmap_version()');
my $s_ext = stats('postgres');

# Rolled back, DROP EXTENSION changes nothing.
$node->safe_psql('ext', 'BEGIN; DROP EXTENSION cmapext; ROLLBACK;');
is( $node->safe_psql('ext', 'SELECT cmap_count(), cmap_version()'),
	"$n|$v_loaded",
	'a rolled back DROP EXTENSION leaves the map as it was');

# A session iterates over a cursor...
my $reader = $node->background_psql('ext');
$reader->query_safe("BEGIN; $declare_cursor;");
is( $reader->query_safe('FETCH 10 FROM c'),
	join("\n",
		map { sprintf('key%06d|%s|%d', $_, 'v' x 100 . $_, $v_loaded) }
		  1 .. 10),
	'the reader fetched the first 10 rows');

# ... while another drops the extension.  This must not wait for the
# reader (a timeout here means DROP EXTENSION blocked).
my ($timed_out, $drop_out, $drop_err);
my $drop_ret = $node->psql(
	'ext', 'DROP EXTENSION cmapext',
	stdout => \$drop_out,
	stderr => \$drop_err,
	timeout => 60,
	timed_out => \$timed_out);
ok(!$timed_out, 'DROP EXTENSION does not wait for the iterating session');
is($drop_ret, 0, 'DROP EXTENSION succeeds while a cursor is open');
is( $node->safe_psql(
		'ext', q{SELECT count(*) FROM pg_extension WHERE extname = 'cmapext'}),
	'0',
	'the extension is gone');

# The reader finishes its cursor: the complete old contents.
is( $reader->query_safe(
		"SELECT * FROM check_cursor('c', 'key', 11, $v_loaded)"),
	($n - 10) . '|0|',
	'the iterating session still reads the complete old contents');
is($reader->query_safe('FETCH 1 FROM c'), '', 'and then the cursor ends');
$reader->query_safe('COMMIT');
$reader->quit;

# The old contents' memory is released once the reader is done.
ok( $node->poll_query_until(
		'postgres',
		"SELECT memory_used - free_pool_bytes = $s0->{live} FROM cmap_stats()"
	),
	'the memory of the dropped contents is released');

# CREATE EXTENSION again: an empty map, versions keep increasing.
$node->safe_psql('ext', 'CREATE EXTENSION cmapext');
my $after = $node->safe_psql('ext',
	q{SELECT cmap_count(), count(*), cmap_load('key000001') IS NULL
	  FROM cmap_iterate()});
is($after, '0|0|t', 'CREATE EXTENSION after DROP EXTENSION gives an empty map');
my $v_new = $node->safe_psql('ext', 'SELECT cmap_version()');
cmp_ok($v_new, '>', $v_loaded, 'version numbers keep increasing');
my $s_new = stats('ext');
is($s_new->{entries}, 0, 'cmap_stats shows no entries');
is($s_new->{version}, $v_new, 'cmap_stats shows the same version');
is($s_new->{pinned}, 0, 'no pin left');

# The re-created map works normally.
is( $node->safe_psql(
		'ext', q{
SELECT cmap_store('fresh', '1');
SELECT cmap_version() - } . $v_new . q{, string_agg(key || '=' || value, ',') FROM cmap_iterate();
}),
	"\n1|fresh=1",
	'the re-created map takes writes and publishes the next version');

# DROP and CREATE EXTENSION in one transaction: empty at once.
load('ext', 'key', 100);
is( $node->safe_psql(
		'ext', q{
BEGIN;
DROP EXTENSION cmapext;
CREATE EXTENSION cmapext;
SELECT cmap_count(), count(*) FROM cmap_iterate();
COMMIT;
}),
	'0|0',
	'DROP + CREATE EXTENSION in one transaction sees an empty map');
is($node->safe_psql('ext', 'SELECT cmap_count()'),
	'0', 'and the map is empty after its commit');

$node->stop;
done_testing();
