
# Copyright (c) 2026, cmapext developers
#
# 002_pin_reclaim.pl
#	Memory of old versions comes back once nobody pins them, and a pinned
#	version keeps only its own memory, not everything written after it.
#
#	- load 20000 keys in one transaction (one version, V);
#	- a background session opens a cursor over cmap_iterate() and fetches
#	  one row: it now pins V;
#	- another session rewrites every key 5 times, in 20 transactions;
#	- cmap_stats(): exactly one pin, on V; retained_bytes > 0 but no more
#	  than the size of V itself, while far more than that was retired by
#	  the churn and reclaimed (the intermediate versions went away although
#	  an older version is still pinned: the interval rule);
#	- the cursor reads the rest: exactly the 20000 original rows, all
#	  carrying version V;
#	- after COMMIT the pin is gone, retained_bytes returns to 0 and
#	  memory_used falls by the size of the released version.
#
#	The cursor uses cmap_iterate() in the target list, so the scan really
#	streams from the pinned tree while the churn runs (a FROM-clause SRF
#	would be materialised at the first FETCH).

use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $nkeys = 20000;
my $rounds = 5;          # full rewrites of every key
my $chunks = 4;          # transactions per rewrite

my $node = PostgreSQL::Test::Cluster->new('pin_reclaim');
$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'cmapext'\ncmapext.max_memory = 16MB\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION cmapext');

# Fetch cmap_stats() as a hash.
sub stats
{
	my $out = $node->safe_psql('postgres',
		q{SELECT version, entries, memory_used, pinned_snapshots,
				 coalesce(oldest_pinned_version, -1), retained_bytes,
				 reclaimed_bytes, map_bytes
		  FROM cmap_stats()});
	my @f = split /\|/, $out;
	my %s;
	@s{
		qw(version entries memory_used pinned oldest retained reclaimed map_bytes)
	} = @f;
	return \%s;
}

# Load: one transaction, one version.
my $v_before = $node->safe_psql('postgres', 'SELECT cmap_version()');
$node->safe_psql(
	'postgres', qq{
SELECT count(cmap_store(format('key%s', lpad(i::text, 6, '0')),
						format('orig-%s', i)))
FROM generate_series(1, $nkeys) i;
});
my $s_loaded = stats();
my $v_loaded = $s_loaded->{version};
is($v_loaded, $v_before + 1, 'the load published one version');
is($s_loaded->{entries}, $nkeys, 'the load stored every key');
is($s_loaded->{pinned}, 0, 'nothing is pinned yet');

# Wait until the load itself has left nothing retired behind.
ok( $node->poll_query_until(
		'postgres', 'SELECT retained_bytes = 0 FROM cmap_stats()'),
	'nothing retained after the load');

# Pin V with a cursor that has read one row.
my $reader = $node->background_psql('postgres');
$reader->query_safe(
	q{BEGIN;
DECLARE c CURSOR FOR
  SELECT (r).key, (r).value, (r).version
  FROM (SELECT cmap_iterate() AS r OFFSET 0) s;
});
is( $reader->query_safe('FETCH 1 FROM c'),
	"key000001|orig-1|$v_loaded",
	'the cursor returns the first row of V');

my $s_pinned = stats();
is($s_pinned->{pinned}, 1, 'the cursor pins one version');
is($s_pinned->{oldest}, $v_loaded, 'the pinned version is V');

# Churn: every key rewritten $rounds times, $chunks transactions per round.
my $chunk = $nkeys / $chunks;
for my $r (1 .. $rounds)
{
	for my $c (0 .. $chunks - 1)
	{
		my $lo = $c * $chunk + 1;
		my $hi = ($c + 1) * $chunk;
		$node->safe_psql(
			'postgres', qq{
SELECT count(cmap_store(format('key%s', lpad(i::text, 6, '0')),
						format('round$r-%s', i)))
FROM generate_series($lo, $hi) i;
});
	}
}
my $v_churned = $node->safe_psql('postgres', 'SELECT cmap_version()');
is($v_churned, $v_loaded + $rounds * $chunks,
	'each churn transaction published one version');

# The reclaimer frees the intermediate versions although V is pinned.  V
# itself had all of its nodes replaced, so once the reclaimer is done
# exactly V's memory stays retained: never more than V's size.
my $v_bytes = $s_loaded->{map_bytes};
ok( $node->poll_query_until(
		'postgres',
		"SELECT retained_bytes <= $v_bytes FROM cmap_stats()"),
	'retained memory shrinks to at most the size of the pinned version');

my $s_churn = stats();
is($s_churn->{pinned}, 1, 'still exactly one pinned version');
is($s_churn->{oldest}, $v_loaded, 'oldest pinned version is still V');
cmp_ok($s_churn->{retained}, '>', 0, 'the pinned version is retained');
is($s_churn->{retained}, $v_bytes,
	'exactly the pinned version (every node of it was replaced) is retained');

# Everything the churn retired, except V's share, was reclaimed.
my $churn_retired = ($s_churn->{reclaimed} + $s_churn->{retained}) -
  ($s_pinned->{reclaimed} + $s_pinned->{retained});
note "V is $v_bytes bytes; churn retired $churn_retired bytes, "
  . "retained $s_churn->{retained}";
cmp_ok($churn_retired, '>=', 3 * $v_bytes,
	'the churn retired several versions worth of memory');
cmp_ok($s_churn->{retained} * 3,
	'<', $churn_retired, 'retained memory is far less than what was retired');
cmp_ok(
	$s_churn->{reclaimed} - $s_pinned->{reclaimed},
	'>=', $churn_retired - $v_bytes,
	'intermediate versions were reclaimed while V was pinned');

# The cursor still sees exactly V: the 19999 remaining rows, in key order,
# each with its original value and version V.  A PL/pgSQL function reads
# the open cursor through a refcursor and reports what it found (this keeps
# 20000 rows out of the test log).
$node->safe_psql(
	'postgres', q{
CREATE FUNCTION check_cursor(cname text, v bigint,
	OUT nrows int, OUT nbad int, OUT first_bad text)
LANGUAGE plpgsql AS $$
DECLARE
	cur refcursor := cname;
	r record;
	prev text := NULL;
	i int;
BEGIN
	nrows := 0;
	nbad := 0;
	LOOP
		FETCH cur INTO r;
		EXIT WHEN NOT FOUND;
		nrows := nrows + 1;
		i := nrows + 1;			-- row 1 was fetched already
		IF r.key IS DISTINCT FROM format('key%s', lpad(i::text, 6, '0'))
		   OR r.value IS DISTINCT FROM format('orig-%s', i)
		   OR r.version IS DISTINCT FROM v
		   OR (prev IS NOT NULL AND r.key COLLATE "C" <= prev COLLATE "C")
		THEN
			nbad := nbad + 1;
			IF first_bad IS NULL THEN
				first_bad := format('row %s: %s|%s|%s', i, r.key, r.value, r.version);
			END IF;
		END IF;
		prev := r.key;
	END LOOP;
END $$;
});
is( $reader->query_safe("SELECT * FROM check_cursor('c', $v_loaded)"),
	($nkeys - 1) . '|0|',
	'the cursor returns the remaining rows of V, all original, in order');
is($reader->query_safe('FETCH 1 FROM c'), '', 'the cursor is exhausted');

# While the cursor is still open (exhausted), the pin is still there.
is(stats()->{pinned}, 1, 'the open cursor still pins V');

$reader->query_safe('COMMIT');

# The pin is gone at once; the reclaimer then frees V.
is(stats()->{pinned}, 0, 'COMMIT released the pin');
ok( $node->poll_query_until(
		'postgres',
		'SELECT retained_bytes = 0 AND pinned_snapshots = 0 FROM cmap_stats()'),
	'V is reclaimed once unpinned');

my $s_after = stats();
is($s_after->{oldest}, -1, 'no oldest pinned version any more');
is($s_after->{version}, $v_churned, 'no version published meanwhile');
note "memory_used: pinned $s_churn->{memory_used}, after $s_after->{memory_used}";
cmp_ok($s_after->{memory_used}, '<', $s_churn->{memory_used},
	'memory_used went down once V was released');
cmp_ok(
	$s_after->{memory_used},
	'<=',
	$s_churn->{memory_used} - $v_bytes / 2,
	'memory_used went down by (at least half) the size of V');

# The session that pinned keeps working, and sees the churned values.
is( $reader->query_safe(
		q{SELECT count(*), min(value), max(value) FROM cmap_iterate()}),
	"$nkeys|round$rounds-1|round$rounds-9999",
	'a new read sees the latest version');
$reader->quit;

$node->stop;
done_testing();
