
# Copyright (c) 2026, cmapext developers
#
# 003_terminate_releases_pins.pl
#	Pins never leak when a session is stopped from outside or a statement
#	is interrupted (design.md 1.10):
#	- pg_terminate_backend() of a session idle in a transaction with an
#	  open cursor over cmap_iterate(), and of a REPEATABLE READ session
#	  that read the map and is now busy in pg_sleep(): each pin goes away
#	  with its backend, and once both are gone the retained memory is
#	  reclaimed (retained_bytes = 0);
#	- pg_cancel_backend() of a statement in the middle of a long iteration:
#	  the pin is released, the session stays connected and keeps using
#	  the map;
#	- statement_timeout firing during a long iteration (an autocommit
#	  statement, and a FETCH from a cursor inside a transaction block, where
#	  the pin must be gone before the ROLLBACK that ends the failed
#	  transaction).

use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $nkeys = 20000;

my $node = PostgreSQL::Test::Cluster->new('terminate');
$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'cmapext'\ncmapext.max_memory = 16MB\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION cmapext');

# A long iteration: streams cmap_iterate() (target-list SRF, so the scan is
# really in progress) and sleeps 10ms per row, i.e. 200s for the whole map.
my $long_iteration = q{SELECT count(*)
  FROM (SELECT cmap_iterate() AS r OFFSET 0) s
  WHERE pg_sleep(0.01) IS NOT NULL};

sub stat_value
{
	my ($col) = @_;
	return $node->safe_psql('postgres', "SELECT $col FROM cmap_stats()");
}

# Rewrite every key (one transaction, one version): everything of the
# previous version is retired.
my $round = 0;

sub churn
{
	$round++;
	$node->safe_psql(
		'postgres', qq{
SELECT count(cmap_store(format('key%s', lpad(i::text, 6, '0')),
						format('r$round-%s', i)))
FROM generate_series(1, $nkeys) i;
});
}

# Run a query in a background session that may fail; return its stdout and
# stderr, and clear the session's stderr so that it can go on.
sub bg_query
{
	my ($bg, $sql) = @_;
	my ($out) = $bg->query($sql);
	my $err = $bg->{stderr};
	$bg->{stderr} = '';
	return ($out, $err);
}

# Stop psql of a session whose backend was terminated.
sub bg_gone
{
	my ($bg) = @_;
	eval { $bg->quit; };
	return;
}

churn();    # initial load
my $v_loaded = stat_value('version');
ok($node->poll_query_until('postgres',
		'SELECT retained_bytes = 0 FROM cmap_stats()'),
	'nothing retained after the load');

############################################################################
# 1. pg_terminate_backend
############################################################################

# Session A: open cursor, one row fetched, idle in transaction.
my $a = $node->background_psql('postgres');
my $a_pid = $a->query_safe('SELECT pg_backend_pid()');
$a->query_safe(
	q{BEGIN;
DECLARE c CURSOR FOR
  SELECT (r).key, (r).value FROM (SELECT cmap_iterate() AS r OFFSET 0) s;
});
is($a->query_safe('FETCH 1 FROM c'), 'key000001|r1-1',
	'session A is in the middle of an iteration');

# Session B: REPEATABLE READ transaction that read the map, then busy.
my $b = $node->background_psql('postgres');
my $b_pid = $b->query_safe('SELECT pg_backend_pid()');
$b->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
is($b->query_safe('SELECT cmap_count()'), $nkeys, 'session B read the map');

is(stat_value('pinned_snapshots'), 2, 'A and B each pin a version');
is(stat_value('oldest_pinned_version'), $v_loaded, 'both pin the loaded version');

$b->query_until(qr/sleeping/, "\\echo sleeping\nSELECT pg_sleep(600);\n");
ok( $node->poll_query_until(
		'postgres',
		"SELECT state = 'active' AND query ~ 'pg_sleep' FROM pg_stat_activity WHERE pid = $b_pid"
	),
	'session B is busy');

# Churn: the pinned version's nodes are retired but must be kept.
churn();
my $v_churned = stat_value('version');
is($v_churned, $v_loaded + 1, 'the churn published one version');
cmp_ok(stat_value('retained_bytes'), '>', 0, 'the pinned version is retained');

# Terminate A (idle in transaction with an open cursor).
is($node->safe_psql('postgres', "SELECT pg_terminate_backend($a_pid)"),
	't', 'terminate session A');
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $a_pid"),
	'session A is gone');
bg_gone($a);
ok( $node->poll_query_until(
		'postgres', 'SELECT pinned_snapshots = 1 FROM cmap_stats()'),
	"A's pin went away with its backend");
is(stat_value('oldest_pinned_version'), $v_loaded, "B's pin is still there");
cmp_ok(stat_value('retained_bytes'), '>', 0,
	'the version B pins is still retained');

# Terminate B (running pg_sleep inside its REPEATABLE READ transaction).
is($node->safe_psql('postgres', "SELECT pg_terminate_backend($b_pid)"),
	't', 'terminate session B');
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $b_pid"),
	'session B is gone');
bg_gone($b);
ok( $node->poll_query_until(
		'postgres',
		q{SELECT pinned_snapshots = 0 AND oldest_pinned_version IS NULL
			 AND retained_bytes = 0 FROM cmap_stats()}),
	'no pins left and the old version is reclaimed');
is(stat_value('version'), $v_churned, 'terminations published nothing');

############################################################################
# 2. pg_cancel_backend during a long iteration
############################################################################

my $c = $node->background_psql('postgres', on_error_stop => 0);
$c->query_safe('\set VERBOSITY verbose');
my $c_pid = $c->query_safe('SELECT pg_backend_pid()');
my $v_c = stat_value('version');

$c->query_until(qr/iterating/, "\\echo iterating\n$long_iteration;\n");
ok( $node->poll_query_until(
		'postgres',
		"SELECT pinned_snapshots = 1 AND oldest_pinned_version = $v_c FROM cmap_stats()"
	),
	'the long iteration pins the current version');

churn();
cmp_ok(stat_value('retained_bytes'), '>', 0,
	'the version being iterated is retained');

is($node->safe_psql('postgres', "SELECT pg_cancel_backend($c_pid)"),
	't', 'cancel the iteration');
my ($c_out, $c_err) = bg_query($c, 'SELECT 1');
like($c_err, qr/57014: canceling statement due to user request/,
	'the iteration was canceled');
is($c_out, '1', 'the session is still usable after the cancel');

is(stat_value('pinned_snapshots'), 0, 'the cancel released the pin');
ok( $node->poll_query_until(
		'postgres', 'SELECT retained_bytes = 0 FROM cmap_stats()'),
	'the canceled iteration\'s version is reclaimed');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE pid = $c_pid"),
	'1',
	'the canceled session is still connected');

# The same session keeps using the map: reads, writes, a full iteration.
is($c->query_safe(q{SELECT cmap_load('key000042')}),
	"r$round-42", 'the canceled session reads the latest version');
$c->query_safe(q{SELECT cmap_store('after-cancel', 'ok')});
is($c->query_safe(q{SELECT count(*) FROM cmap_iterate()}),
	$nkeys + 1, 'the canceled session writes and iterates');
is(stat_value('pinned_snapshots'), 0, 'and leaves no pin behind');

# A canceled iteration inside a savepoint: after ROLLBACK TO SAVEPOINT the
# transaction goes on, without the pin of the failed statement.
$c->query_safe('BEGIN; SAVEPOINT s;');
$c->query_until(qr/iterating2/, "\\echo iterating2\n$long_iteration;\n");
ok( $node->poll_query_until(
		'postgres', 'SELECT pinned_snapshots = 1 FROM cmap_stats()'),
	'the iteration inside a savepoint pins a version');
churn();
is($node->safe_psql('postgres', "SELECT pg_cancel_backend($c_pid)"),
	't', 'cancel the iteration inside the savepoint');
($c_out, $c_err) = bg_query($c, 'ROLLBACK TO SAVEPOINT s');
like($c_err, qr/57014: canceling statement due to user request/,
	'the iteration inside the savepoint was canceled');
is(stat_value('pinned_snapshots'), 0,
	'the pin is gone after ROLLBACK TO SAVEPOINT, inside the transaction');
is($c->query_safe(q{SELECT cmap_load('key000042')}),
	"r$round-42", 'the transaction goes on and reads the latest version');
is(stat_value('pinned_snapshots'), 0,
	'that statement left no pin behind either');
ok( $node->poll_query_until(
		'postgres', 'SELECT retained_bytes = 0 FROM cmap_stats()'),
	'the canceled iteration\'s version is reclaimed while the transaction is open');
$c->query_safe('COMMIT');

############################################################################
# 3. statement_timeout during a long iteration
############################################################################

# 3a. An autocommit statement.
$c->query_safe(q{SET statement_timeout = '1s'});
my ($t_out, $t_err) = bg_query($c, $long_iteration);
like($t_err, qr/57014: canceling statement due to statement timeout/,
	'statement_timeout ended the iteration');
$c->query_safe('RESET statement_timeout');
is(stat_value('pinned_snapshots'), 0,
	'the timed-out statement left no pin behind');

# 3b. A FETCH from a cursor inside a transaction block.  The pin is taken
# by the first FETCH (checked), and must be released by the error itself,
# not only by the ROLLBACK that ends the failed transaction.
my $v_t = stat_value('version');
$c->query_safe(
	q{BEGIN;
DECLARE t2 CURSOR FOR
  SELECT (r).key FROM (SELECT cmap_iterate() AS r OFFSET 0) s
  WHERE pg_sleep(0.01) IS NOT NULL});
is($c->query_safe('FETCH 1 FROM t2'), 'after-cancel',
	'the cursor has started iterating');
is(stat_value('pinned_snapshots'), 1, 'the open cursor pins a version');
is(stat_value('oldest_pinned_version'), $v_t, 'the current one');

churn();
cmp_ok(stat_value('retained_bytes'), '>', 0,
	'the version the cursor reads is retained');

$c->query_safe(q{SET LOCAL statement_timeout = '500ms'});
($t_out, $t_err) = bg_query($c, 'FETCH ALL FROM t2');
like($t_err, qr/57014: canceling statement due to statement timeout/,
	'statement_timeout ended the FETCH');
is(stat_value('pinned_snapshots'), 0,
	'the pin is released by the error, before the transaction block ends');
ok( $node->poll_query_until(
		'postgres', 'SELECT retained_bytes = 0 FROM cmap_stats()'),
	'the cursor\'s version is reclaimed');
($t_out, $t_err) = bg_query($c, 'SELECT cmap_count()');
like($t_err, qr/25P02/, 'the transaction block is aborted');
$c->query_safe('ROLLBACK');

is($c->query_safe('SELECT cmap_count()'), $nkeys + 1,
	'the session keeps using the map after the timeout');
is(stat_value('pinned_snapshots'), 0, 'no pin left at the end');
$c->quit;

$node->stop;
done_testing();
