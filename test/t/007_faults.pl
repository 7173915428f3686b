
# Copyright (c) 2026, cmapext developers
#
# 007_faults.pl
#	Interrupted commits and iterations never leave a partial version, a pin
#	or a commit window behind (design.md 1.4, 1.9, 1.10; cmap_commit.c:
#	batches of more than 64 keys are built at PRE_COMMIT while holding the
#	map's exclusive commit window).
#
#	Some states are made deterministic with synchronous replication to a
#	standby that never connects: a transaction that wrote WAL and runs with
#	synchronous_commit = on waits in its commit after PRE_COMMIT and before
#	the COMMIT step, i.e. with its map commit window open (a small batch) or
#	with the exclusive window held and its new version built (a large one).
#	Cancelling that wait lets the commit finish; the other sessions run
#	with synchronous_commit = local and never wait for it.
#
#	1. A large COMMIT waiting for the exclusive window (behind a small
#	   committer that holds a window) is cancelled, or terminated: nothing
#	   of it is applied, a small autocommit store that queued behind it
#	   completes, the blocked committer completes when released.
#	2. A large COMMIT that holds the exclusive window: a small autocommit
#	   store waits and completes once it is released; readers are never
#	   blocked and see nothing of it meanwhile; an immediate-mode write
#	   waiting for a window is ended by statement_timeout and applies
#	   nothing.  pg_terminate_backend of the committer while its commit is
#	   already durable: the whole batch is published, like its table row.
#	3. pg_cancel_backend / pg_terminate_backend while a 300000-key version
#	   is being built at PRE_COMMIT: all or nothing (counts, version, entry
#	   versions), matching what the client was told.
#	4. statement_timeout: during an iteration in FROM (custom scan), in a
#	   cursor FETCH, during the statement that builds a huge batch, and with
#	   a tiny statement_timeout set for the COMMIT of a huge batch
#	   (PostgreSQL disables statement_timeout around the commit itself: the
#	   contract checked is all-or-nothing and no leak).
#	5. A large COMMIT racing with small autocommit stores: all complete.
#	6. pg_terminate_backend / pg_cancel_backend of sessions in the middle
#	   of an iteration while others commit.
#	7. DROP EXTENSION while other sessions iterate through cursors: they
#	   finish with the complete old contents.
#	8. A transaction that fails after cmapext's PRE_COMMIT step (SERIALIZABLE
#	   write skew, detected at commit) with a large batch already built:
#	   nothing applied, the exclusive window given back.
#	After every section: no pin, nothing retained, no memory leaked
#	(memory_used = map_bytes + free_pool_bytes once settled), and commits of
#	more than 64 keys still go through within a bounded time.

use strict;
use warnings FATAL => 'all';

use Digest::MD5 qw(md5_hex);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $big = 300000;

my $node = PostgreSQL::Test::Cluster->new('faults');
$node->init(allows_streaming => 1);
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'cmapext'
cmapext.max_memory = 512MB
synchronous_standby_names = 'nobody_ever_connects'
synchronous_commit = local
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION cmapext');
$node->safe_psql('postgres', 'CREATE TABLE sync_t (i int)');
$node->safe_psql('postgres',
	q{SELECT count(cmap_store('base:' || i, 'b' || i)) FROM generate_series(1, 1000) i});

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub version { return sql('SELECT cmap_version()'); }

sub count_prefix
{
	my ($prefix) = @_;
	return sql("SELECT count(*) FROM cmap_iterate('$prefix')");
}

# Poll a query until it returns 't', for at most $secs seconds.
sub poll_until
{
	my ($query, $secs) = @_;
	$secs //= 60;
	for (my $i = 0; $i < $secs * 10; $i++)
	{
		my ($ret, $out) = $node->psql('postgres', $query);
		return 1 if $ret == 0 && $out eq 't';
		usleep(100_000);
	}
	diag "timed out after ${secs}s waiting for: $query";
	return 0;
}

# A background session that may fail, with verbose errors.
sub session
{
	my $s = $node->background_psql('postgres', on_error_stop => 0);
	$s->set_query_timer_restart;
	$s->query_safe('\set VERBOSITY verbose');
	my $pid = $s->query_safe('SELECT pg_backend_pid()');
	return ($s, $pid);
}

# Wait for a session's earlier input to finish; return its output and the
# errors it printed since the last call.
sub collect
{
	my ($s) = @_;
	my ($out) = $s->query(q{SELECT 'collected'});
	my $err = $s->{stderr};
	$s->{stderr} = '';
	return ($out, $err);
}

sub gone
{
	my ($s) = @_;
	eval { $s->quit; };
	return;
}

sub waits_on
{
	my ($pid, $event, $what) = @_;
	ok( poll_until(
			"SELECT wait_event IS NOT DISTINCT FROM '$event' FROM pg_stat_activity WHERE pid = $pid"
		),
		"$what waits on $event");
}

sub wait_gone
{
	my ($pid) = @_;
	return poll_until("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid");
}

# The SQL that fills a transaction's batch with $big keys.
sub big_batch
{
	my ($prefix, $tag) = @_;
	$tag //= 'v';
	return qq{SELECT count(cmap_store(format('$prefix%s', md5(i::text)), '$tag-' || i))
FROM generate_series(1, $big) i};
}

# A session whose small map commit stays open (window held), waiting for
# synchronous replication.
sub start_blocker
{
	my ($key) = @_;
	my ($s, $pid) = session();
	$s->query_safe(
		qq{BEGIN; SET LOCAL synchronous_commit = on; INSERT INTO sync_t VALUES (0);
		   SELECT cmap_store('$key', 'blocker')});
	$s->query_until(qr/committing/, "\\echo committing\nCOMMIT;\n");
	waits_on($pid, 'SyncRep', "the blocker ($key)");
	return ($s, $pid);
}

# Release a session waiting for synchronous replication: its commit
# completes locally.
sub release_syncrep
{
	my ($s, $pid, $what) = @_;
	is(sql("SELECT pg_cancel_backend($pid)"), 't', "release $what");
	my ($out, $err) = collect($s);
	like($err, qr/canceling wait for synchronous replication/,
		"$what: its commit stopped waiting for the standby");
	return;
}

# Everything is back to rest: no pins, nothing retained, no leaked memory.
sub at_rest
{
	my ($what) = @_;
	ok( poll_until(
			q{SELECT pinned_snapshots = 0 AND retained_bytes = 0
				 AND memory_used = map_bytes + free_pool_bytes FROM cmap_stats()}),
		"$what: no pin, nothing retained, no memory leaked");
	return;
}

# A commit of more than 64 keys goes through, within a bounded time.
my $probe = 0;

sub large_commit_works
{
	my ($what) = @_;
	$probe++;
	my $v = version();
	my $timed_out = 0;
	my ($ret, $out, $err) = $node->psql(
		'postgres',
		qq{BEGIN;
SELECT count(cmap_store('probe$probe:' || i, 'p')) FROM generate_series(1, 100) i;
COMMIT;},
		timeout => 60,
		timed_out => \$timed_out);
	ok(!$timed_out && $ret == 0, "$what: a commit of 100 keys goes through")
	  or diag "stderr: $err";
	is(sql("SELECT cmap_version(), count(*) FROM cmap_iterate('probe$probe:')"),
		($v + 1) . '|100', "$what: it published one version");
	sql("SELECT count(cmap_delete(key)) FROM cmap_iterate('probe$probe:')");
	return;
}

# A batch is either entirely in the map, in one version, or not at all.
sub all_or_nothing
{
	my ($prefix, $v_applied, $what) = @_;
	my $r = sql(
		qq{SELECT count(m.key), count(*) FILTER (WHERE m.version = $v_applied),
				  count(*) FILTER (WHERE m.value = 'v-' || g.i),
				  (SELECT count(*) FROM cmap_iterate('$prefix'))
		   FROM generate_series(1, $big) g(i)
		   LEFT JOIN cmap_iterate('$prefix') m ON m.key = format('$prefix%s', md5(g.i::text))});
	if ($r eq '0|0|0|0')
	{
		pass("$what: no key of the batch exists");
		return 'none';
	}
	is($r, "$big|$big|$big|$big",
		"$what: every key of the batch exists, from one version, with its value");
	return 'all';
}

# Cheaper check for the all-or-nothing of a batch: counts and versions only.
sub batch_state
{
	my ($prefix, $v_applied) = @_;
	my $r = sql(
		qq{SELECT count(*), count(*) FILTER (WHERE version = $v_applied)
		   FROM cmap_iterate('$prefix')});
	return 'none' if $r eq '0|0';
	return 'all' if $r eq "$big|$big";
	return "partial ($r)";
}

############################################################################
# 1. A large COMMIT waiting for the exclusive window: cancel, terminate
############################################################################

for my $signal (qw(cancel terminate))
{
	my $what = "exclusive wait, $signal";
	my $v0 = version();
	my ($s, $s_pid) = start_blocker("blocker-1-$signal");

	my ($l, $l_pid) = session();
	$l->query_safe('BEGIN');
	$l->query_safe(big_batch("one-$signal:"));
	$l->query_until(qr/committing/, "\\echo committing\nCOMMIT;\n");
	ok( poll_until(
			"SELECT wait_event = 'Extension' AND query ~ '^COMMIT' FROM pg_stat_activity WHERE pid = $l_pid"
		),
		"$what: the large COMMIT waits for the exclusive window");

	# a small store queues behind the waiting exclusive committer
	my ($b, $b_pid) = session();
	$b->query_until(qr/storing/,
		"\\echo storing\nSELECT cmap_store('small-1-$signal', 'b');\n");
	waits_on($b_pid, 'Extension', "$what: a small autocommit store");

	# another queued small store is signalled while it waits for a window
	my ($d, $d_pid) = session();
	$d->query_until(qr/storing/,
		"\\echo storing\nSELECT cmap_store('queued-1-$signal', 'd');\n");
	waits_on($d_pid, 'Extension', "$what: a second small autocommit store");
	is(sql("SELECT pg_${signal}_backend($d_pid)"), 't', "$what: signal the queued small store");
	if ($signal eq 'cancel')
	{
		my ($out, $err) = collect($d);
		like($err, qr/57014/, "$what: the queued small store is cancelled");
		$d->quit;
	}
	else
	{
		ok(wait_gone($d_pid), "$what: the queued small store's session is gone");
		gone($d);
	}
	is(sql("SELECT cmap_load('queued-1-$signal') IS NULL"), 't',
		"$what: the signalled small store applied nothing");

	is(sql("SELECT pg_${signal}_backend($l_pid)"), 't', "$what: signal the large COMMIT");
	if ($signal eq 'cancel')
	{
		my ($out, $err) = collect($l);
		like($err, qr/57014: canceling statement due to user request/,
			"$what: the COMMIT fails");
	}
	else
	{
		ok(wait_gone($l_pid), "$what: the committer is gone");
		gone($l);
	}

	# the small store completes although the blocker still holds its window
	my ($b_out, $b_err) = collect($b);
	is($b_err, '', "$what: the queued small store completes");
	is(sql("SELECT cmap_load('small-1-$signal'), cmap_version()"),
		'b|' . ($v0 + 1), "$what: the small store published version + 1");
	is(count_prefix("one-$signal:"), 0, "$what: no key of the large batch exists");
	is(sql("SELECT count(*) FROM sync_t WHERE i = 0"), 0,
		"$what: the blocker has not committed yet");

	release_syncrep($s, $s_pid, "$what: the blocker");
	is(sql("SELECT cmap_load('blocker-1-$signal'), cmap_version()"),
		'blocker|' . ($v0 + 2), "$what: the blocker published its version");
	if ($signal eq 'cancel')
	{
		# the cancelled session is fine and can commit a large batch
		$l->query_safe(
			qq{BEGIN; SELECT count(cmap_store('again:' || i, 'a')) FROM generate_series(1, 1000) i; COMMIT;}
		);
		is(count_prefix('again:'), 1000, "$what: the cancelled session commits again");
		$l->quit;
	}
	$s->quit;
	$b->quit;
	sql("DELETE FROM sync_t");
	at_rest($what);
	large_commit_works($what);
}
sql(q{SELECT count(cmap_delete(key)) FROM cmap_iterate('again:')});

############################################################################
# 2. A large COMMIT holding the exclusive window (built, not yet published)
############################################################################

for my $signal (qw(cancel terminate))
{
	my $what = "exclusive window held, $signal";
	my $prefix = "two-$signal:";
	my $v0 = version();
	my $count0 = sql('SELECT cmap_count()');

	my ($l, $l_pid) = session();
	$l->query_safe(
		qq{BEGIN; SET LOCAL synchronous_commit = on; INSERT INTO sync_t VALUES (2)});
	$l->query_safe(big_batch($prefix));
	$l->query_until(qr/committing/, "\\echo committing\nCOMMIT;\n");
	waits_on($l_pid, 'SyncRep', "$what: the large COMMIT (built, durable)");

	# readers are not blocked, and see nothing of the batch
	is(sql("SELECT cmap_version(), cmap_count(), (SELECT count(*) FROM cmap_iterate('$prefix'))"),
		"$v0|$count0|0", "$what: readers see the previous version");
	is(sql('SELECT count(*) FROM sync_t'), 0, "$what: its table row is not visible either");

	# a small autocommit store waits for the window
	my ($b, $b_pid) = session();
	$b->query_until(qr/storing/,
		"\\echo storing\nSELECT cmap_store('small-2-$signal', 'b');\n");
	waits_on($b_pid, 'Extension', "$what: a small autocommit store");

	# an immediate-mode write waiting for a window ends with statement_timeout
	my ($t, $t_pid) = session();
	$t->query_safe(
		q{SET cmapext.transactional = off; SET statement_timeout = '300ms'});
	$t->query("SELECT cmap_store('imm-2-$signal', 'i')");
	my $t_err = $t->{stderr};
	$t->{stderr} = '';
	like($t_err, qr/57014: canceling statement due to statement timeout/,
		"$what: an immediate write waiting for a window times out");
	$t->query_safe('RESET statement_timeout');

	is(sql("SELECT pg_${signal}_backend($l_pid)"), 't',
		"$what: signal the committer waiting for the standby");
	if ($signal eq 'cancel')
	{
		my ($out, $err) = collect($l);
		like($err, qr/canceling wait for synchronous replication/,
			"$what: the commit completes locally");
		unlike($err, qr/ERROR/, "$what: the COMMIT reports no error");
		$l->quit;
	}
	else
	{
		ok(wait_gone($l_pid), "$what: the committer is gone");
		gone($l);
	}

	# the transaction committed (its row is there): so is its whole batch
	is(sql('SELECT count(*) FROM sync_t WHERE i = 2'), 1,
		"$what: the transaction committed");
	is(all_or_nothing($prefix, $v0 + 1, $what), 'all',
		"$what: the committed transaction's batch is published, as version + 1");

	my ($b_out, $b_err) = collect($b);
	is($b_err, '', "$what: the small store completes");
	is(sql("SELECT version FROM cmap_iterate('small-2-$signal')"), $v0 + 2,
		"$what: after the large commit (version + 2)");
	is(sql("SELECT cmap_load('imm-2-$signal') IS NULL"), 't',
		"$what: the timed-out immediate write applied nothing");
	$t->query_safe("SELECT cmap_store('imm-2-$signal', 'later')");
	is(sql("SELECT cmap_load('imm-2-$signal'), cmap_version()"),
		'later|' . ($v0 + 3), "$what: the same session writes immediately again");
	$t->quit;
	$b->quit;

	sql("DELETE FROM sync_t");
	sql("BEGIN; SELECT count(cmap_delete(key)) FROM cmap_iterate('$prefix'); COMMIT;");
	at_rest($what);
	large_commit_works($what);
}

############################################################################
# 3. Cancel / terminate while the new version is being built
############################################################################

# The large COMMIT first waits behind a blocker; a server-side loop releases
# the blocker, watches the committer leave its wait (it is now building its
# version, for tens of milliseconds) and signals it at once.  Whether the
# signal lands in the build or after it, the result must be all or nothing.
for my $signal (qw(cancel terminate))
{
	for my $round (1 .. 3)
	{
		my $what = "build, $signal $round";
		my $prefix = "three-$signal-$round:";
		my $v0 = version();
		my ($s, $s_pid) = start_blocker("blocker-3-$signal-$round");

		my ($l, $l_pid) = session();
		$l->query_safe('BEGIN');
		$l->query_safe(big_batch($prefix));
		$l->query_until(qr/committing/, "\\echo committing\nCOMMIT;\n");
		ok( poll_until(
				"SELECT wait_event = 'Extension' AND query ~ '^COMMIT' FROM pg_stat_activity WHERE pid = $l_pid"
			),
			"$what: the large COMMIT waits for the exclusive window");

		my ($do_ret, $do_out, $do_err) = $node->psql(
			'postgres', qq{
DO \$\$
DECLARE
	we text;
	t0 timestamptz := clock_timestamp();
BEGIN
	PERFORM pg_cancel_backend($s_pid);
	LOOP
		PERFORM pg_stat_clear_snapshot();
		SELECT wait_event INTO we FROM pg_stat_activity WHERE pid = $l_pid;
		EXIT WHEN we IS DISTINCT FROM 'Extension'
			OR clock_timestamp() - t0 > interval '30 s';
	END LOOP;
	PERFORM pg_${signal}_backend($l_pid);
	RAISE NOTICE 'signalled %', CASE WHEN we IS DISTINCT FROM 'Extension'
		THEN 'after the wait' ELSE 'during the wait' END;
END
\$\$});
		like($do_err, qr/signalled after the wait/,
			"$what: the committer was signalled once it left the wait");
		my ($s_out, $s_err) = collect($s);
		like($s_err, qr/canceling wait for synchronous replication/,
			"$what: the blocker was released");
		$s->quit;

		my $told;
		if ($signal eq 'cancel')
		{
			my ($out, $err) = collect($l);
			$told = ($err =~ /57014/) ? 'none' : 'all';
			unlike($err, qr/ERROR(?!:\s+57014)/, "$what: no error other than the cancel");
			$l->quit;
		}
		else
		{
			ok(wait_gone($l_pid), "$what: the committer is gone");
			gone($l);
		}
		# the blocker published v0 + 1; the batch, if applied, v0 + 2
		my $state = batch_state($prefix, $v0 + 2);
		like($state, qr/^(all|none)$/, "$what: the batch is all or nothing ($state)");
		is($state, $told, "$what: as the client was told") if defined $told;
		is(version(), $v0 + ($state eq 'all' ? 2 : 1),
			"$what: the version matches ($state)");
		note "$what: the batch was " . ($state eq 'all' ? 'applied' : 'discarded');
		sql("BEGIN; SELECT count(cmap_delete(key)) FROM cmap_iterate('$prefix'); COMMIT;");
		sql("DELETE FROM sync_t");
		at_rest($what);
	}
	large_commit_works("build, $signal");
}

############################################################################
# 4. statement_timeout
############################################################################

# A map of a good size to iterate.
sql(qq{BEGIN; @{[big_batch('it:')]}; COMMIT;});
my $nall = sql('SELECT cmap_count()');

{
	my ($c, $c_pid) = session();

	# 4a. an iteration in FROM (custom scan)
	$c->query_safe(q{SET statement_timeout = '300ms'});
	$c->query(q{SELECT count(*) FROM cmap_iterate() WHERE pg_sleep(0.0005) IS NOT NULL});
	like($c->{stderr}, qr/57014: canceling statement due to statement timeout/,
		'statement_timeout ends an iteration in FROM');
	$c->{stderr} = '';
	$c->query_safe('RESET statement_timeout');
	is(sql('SELECT pinned_snapshots FROM cmap_stats()'), 0, 'the timed-out scan left no pin');

	# 4b. a FETCH from a cursor over a FROM-clause iteration
	$c->query_safe(
		q{BEGIN;
DECLARE cur CURSOR FOR SELECT key FROM cmap_iterate() WHERE pg_sleep(0.0005) IS NOT NULL;
FETCH 5 FROM cur;});
	is(sql('SELECT pinned_snapshots FROM cmap_stats()'), 1, 'the cursor pins a version');
	sql(q{SELECT cmap_store('base:1', 'changed while the cursor is open')});
	$c->query_safe(q{SET LOCAL statement_timeout = '300ms'});
	$c->query('FETCH ALL FROM cur');
	like($c->{stderr}, qr/57014: canceling statement due to statement timeout/,
		'statement_timeout ends a FETCH');
	$c->{stderr} = '';
	is(sql('SELECT pinned_snapshots FROM cmap_stats()'), 0,
		'the timed-out FETCH released the pin before ROLLBACK');
	$c->query_safe('ROLLBACK');

	# 4c. the statement building a huge batch times out: nothing applied
	my $v0 = version();
	$c->query_safe(q{SET statement_timeout = '50ms'});
	$c->query(big_batch('st-a:'));
	like($c->{stderr}, qr/57014: canceling statement due to statement timeout/,
		'statement_timeout ends the statement building a huge batch (autocommit)');
	$c->{stderr} = '';
	$c->query_safe('RESET statement_timeout');
	$c->query_safe(
		q{BEGIN; SELECT count(cmap_store('st-b-first:' || i, 'x')) FROM generate_series(1, 100) i;
		  SET LOCAL statement_timeout = '50ms'});
	$c->query(big_batch('st-b:'));
	like($c->{stderr}, qr/57014/, 'statement_timeout ends it inside a transaction block');
	$c->{stderr} = '';
	$c->query_safe('ROLLBACK');
	is( sql(
			q{SELECT cmap_version(), (SELECT count(*) FROM cmap_iterate('st-'))}),
		"$v0|0", 'the timed-out batches applied nothing');

	# 4d. a tiny statement_timeout for the COMMIT of a huge batch
	$c->query_safe('BEGIN');
	$c->query_safe(big_batch('st-c:'));
	$c->query_safe(q{SET LOCAL statement_timeout = '1ms'});
	$c->query('COMMIT');
	my $err = $c->{stderr};
	my $out;
	$c->{stderr} = '';
	my $told = ($err =~ /57014/) ? 'none' : 'all';
	note "COMMIT of a huge batch with statement_timeout = 1ms: "
	  . ($told eq 'all' ? 'committed (the timeout does not cover the commit)' : "failed: $err");
	unlike($err, qr/ERROR(?!:\s+57014)/, 'the COMMIT fails with nothing but a timeout, if at all');
	is(batch_state('st-c:', $v0 + 1), $told,
		'the COMMIT with a tiny statement_timeout is all or nothing, as reported');
	sql(q{BEGIN; SELECT count(cmap_delete(key)) FROM cmap_iterate('st-c:'); COMMIT;});

	# 4e. statement_timeout while an autocommit statement's commit waits for
	# the exclusive window (the wait happens in the commit, after the
	# statement): observed only, the contract is that it completes or fails
	# cleanly once the window is free.
	my ($s, $s_pid) = start_blocker('blocker-4e');
	$v0 = version();
	$c->query_safe(q{SET statement_timeout = '200ms'});
	$c->query_until(qr/storing/,
		"\\echo storing\nSELECT count(cmap_store('st-e:' || i, 'e')) FROM generate_series(1, 100) i;\n"
	);
	waits_on($c_pid, 'Extension', 'an autocommit 100-key store behind the blocker');
	sleep(1);
	my $still = sql(
		"SELECT wait_event IS NOT DISTINCT FROM 'Extension' FROM pg_stat_activity WHERE pid = $c_pid");
	note 'after 1s with statement_timeout = 200ms, the commit '
	  . ($still eq 't' ? 'still waits for the exclusive window' : 'no longer waits');
	release_syncrep($s, $s_pid, 'the blocker of 4e');
	$s->quit;
	($out, $err) = collect($c);
	my $e_state = count_prefix('st-e:');
	ok( ($err eq '' && $e_state == 100) || ($err =~ /57014/ && $e_state == 0),
		"the 100-key store waiting in its commit is all or nothing ($e_state keys, error: '$err')"
	);
	$c->query_safe('RESET statement_timeout');
	$c->quit;
	sql(q{SELECT count(cmap_delete(key)) FROM cmap_iterate('st-e:')});
	sql("DELETE FROM sync_t");
	at_rest('statement_timeout');
	large_commit_works('statement_timeout');
}

############################################################################
# 5. A large COMMIT racing with small autocommit stores
############################################################################

{
	my $v0 = version();
	my ($l, $l_pid) = session();
	$l->query_safe('BEGIN');
	$l->query_safe(big_batch('five:'));
	$l->query_until(qr/committing/, "\\echo committing\nCOMMIT;\n");
	my $all_done = 1;
	for my $i (1 .. 20)
	{
		my $timed_out = 0;
		my ($ret) = $node->psql(
			'postgres', "SELECT cmap_store('five-small-$i', '$i')",
			timeout => 60,
			timed_out => \$timed_out);
		$all_done = 0 if $ret != 0 || $timed_out;
	}
	ok($all_done, 'small stores during a large COMMIT all complete');
	my ($out, $err) = collect($l);
	is($err, '', 'the large COMMIT succeeds');
	$l->quit;
	is(sql(q{SELECT count(*) FROM cmap_iterate('five-small-')}), 20,
		'every small store is there');
	is(batch_state('five:', sql(q{SELECT version FROM cmap_iterate('five:') LIMIT 1})),
		'all', 'the large batch is there, in one version');
	is(version(), $v0 + 21, '21 commits, 21 versions');
	sql(q{BEGIN; SELECT count(cmap_delete(key)) FROM cmap_iterate('five'); COMMIT;});
	at_rest('large commit racing with small stores');
}

############################################################################
# 6. Sessions stopped in the middle of an iteration
############################################################################

for my $signal (qw(terminate cancel))
{
	my $what = "iteration, $signal";
	my ($i, $i_pid) = session();
	$i->query_safe(
		q{BEGIN;
DECLARE cur CURSOR FOR SELECT (r).key FROM (SELECT cmap_iterate() AS r OFFSET 0) s
  WHERE pg_sleep(0.001) IS NOT NULL;
FETCH 3 FROM cur;});
	my $v_pinned = version();
	is(sql('SELECT oldest_pinned_version FROM cmap_stats()'), $v_pinned,
		"$what: the cursor pins the current version");
	# rewrite every key of the iterated version
	sql(qq{BEGIN; @{[big_batch('it:', 'w')]}; COMMIT;});
	cmp_ok(sql('SELECT retained_bytes FROM cmap_stats()'), '>', 0,
		"$what: the pinned version is retained");

	# the session is busy reading the rest
	$i->query_until(qr/fetching/, "\\echo fetching\nFETCH ALL FROM cur;\n");
	ok( poll_until(
			"SELECT state = 'active' AND query ~ 'FETCH ALL' FROM pg_stat_activity WHERE pid = $i_pid"
		),
		"$what: the session is in the middle of the iteration");
	is(sql("SELECT pg_${signal}_backend($i_pid)"), 't', "$what: signal it");
	if ($signal eq 'cancel')
	{
		my ($out, $err) = collect($i);
		like($err, qr/57014/, "$what: the FETCH is cancelled");
		is(sql('SELECT pinned_snapshots FROM cmap_stats()'), 0,
			"$what: the pin is released by the error");
		$i->query_safe('ROLLBACK');
		is($i->query_safe(q{SELECT count(*) FROM cmap_iterate('it:')}), $big,
			"$what: the session iterates again");
		$i->quit;
	}
	else
	{
		ok(wait_gone($i_pid), "$what: the session is gone");
		gone($i);
	}
	at_rest($what);
	large_commit_works($what);
}

############################################################################
# 7. DROP EXTENSION while other sessions iterate
############################################################################

sql(q{SELECT cmap_clear()});
sql(q{SELECT count(cmap_store(format('drop:%s', lpad(i::text, 5, '0')), 'd' || i || repeat('-', i % 700)))
	  FROM generate_series(1, 5000) i});
my $expected = sql(q{SELECT key || '|' || value FROM cmap_iterate()});
my $v_before_drop = version();

my ($ra, $ra_pid) = session();
$ra->query_safe(
	q{BEGIN;
DECLARE ca CURSOR FOR SELECT (r).key || '|' || (r).value FROM (SELECT cmap_iterate() AS r OFFSET 0) s});
my $first_a = $ra->query_safe('FETCH 1 FROM ca');
my ($rb, $rb_pid) = session();
$rb->query_safe(
	q{BEGIN ISOLATION LEVEL REPEATABLE READ;
DECLARE cb CURSOR FOR SELECT key || '|' || value FROM cmap_iterate()});
my $first_b = $rb->query_safe('FETCH 1 FROM cb');
is(sql('SELECT pinned_snapshots FROM cmap_stats()'), 2, 'two cursors pin the map');

sql('DROP EXTENSION cmapext');
is(sql(q{SELECT count(*) FROM pg_extension WHERE extname = 'cmapext'}), 0,
	'the extension is dropped');

my $rest_a = $ra->query_safe('FETCH ALL FROM ca');
my $rest_b = $rb->query_safe('FETCH ALL FROM cb');
is(md5_hex("$first_a\n$rest_a"), md5_hex($expected),
	'a cursor (target-list iteration) reads the complete old contents after DROP EXTENSION');
is(md5_hex("$first_b\n$rest_b"), md5_hex($expected),
	'a cursor (FROM-clause iteration) reads the complete old contents after DROP EXTENSION');
$ra->query_safe('COMMIT');
$rb->query_safe('COMMIT');
$ra->quit;
$rb->quit;

sql('CREATE EXTENSION cmapext');
is(sql('SELECT cmap_count(), cmap_version() > ' . $v_before_drop),
	'0|t', 'CREATE EXTENSION again: an empty map, versions keep increasing');
at_rest('after DROP EXTENSION');
large_commit_works('after DROP EXTENSION');

############################################################################
# 8. A failure after PRE_COMMIT: SERIALIZABLE's commit-time check
############################################################################

# Write skew: both read both rows and update one each; the second COMMIT
# fails in PreCommit_CheckForSerializationFailure, which runs after
# cmapext built the large batch's version.  Nothing may be applied and the
# exclusive window must be given back.
sql('CREATE TABLE ssi_t (id int PRIMARY KEY, v int); INSERT INTO ssi_t VALUES (1, 0), (2, 0)');
{
	my $v0 = version();
	my ($s1, $s1_pid) = session();
	my ($s2, $s2_pid) = session();
	$s1->query_safe('BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT sum(v) FROM ssi_t');
	$s2->query_safe('BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT sum(v) FROM ssi_t');
	$s1->query_safe('UPDATE ssi_t SET v = 1 WHERE id = 1');
	$s2->query_safe('UPDATE ssi_t SET v = 1 WHERE id = 2');
	$s1->query_safe(q{SELECT cmap_store('ssi-1', 'one')});
	$s2->query_safe(big_batch('ssi-2:'));
	$s1->query_safe('COMMIT');
	$s2->query('COMMIT');
	my $err = $s2->{stderr};
	$s2->{stderr} = '';
	like($err, qr/40001: could not serialize access due to read\/write dependencies/,
		'SSI: the second COMMIT fails after the map pre-commit step');
	is(sql(q{SELECT v FROM ssi_t WHERE id = 2}), 0, 'SSI: its table change is rolled back');
	is(count_prefix('ssi-2:'), 0, 'SSI: no key of its large batch exists');
	is(sql(q{SELECT cmap_load('ssi-1'), cmap_version()}), 'one|' . ($v0 + 1),
		'SSI: only the first transaction published');
	$s1->quit;
	$s2->quit;
	at_rest('SSI failure after PRE_COMMIT');
	large_commit_works('SSI failure after PRE_COMMIT');
}

$node->stop('fast');
done_testing();
