
# Copyright (c) 2026, cmapext developers
#
# 008_hostile.pl
#	Hostile input and hostile environments.
#
#	1. Keys: 1024 bytes (ASCII and multibyte) work, 1025 bytes fail with
#	   54000 in every function that takes a key and change nothing; the
#	   empty key and the empty value round-trip (never confused with NULL).
#	2. Huge values: 100MB, and about 1000MB when the machine has the memory
#	   (cmapext.max_memory = 1200MB): stored and read back identical
#	   (length and md5, through cmap_load and cmap_iterate); one more that
#	   does not fit fails cleanly with 53200 and the map goes on; with a
#	   64MB map, 100MB fails with 53200 (transactional and immediate mode).
#	   Memory comes back once they are deleted.
#	3. Settings: invalid values of cmapext.max_memory / max_databases in
#	   postgresql.conf make the server refuse to start, with the parameter
#	   named in the log; invalid SET / ALTER SYSTEM values are rejected
#	   (22023), settings fixed at start cannot be SET (55P02), the cmapext
#	   prefix is reserved (42602).
#	4. cmapext.max_databases exhausted: a third database gets 53400 with a
#	   hint naming cmapext.max_databases, and works once another database
#	   is dropped.
#	5. A database without the extension: the functions do not exist
#	   (42883), and it is not counted in cmap_stats().databases; neither is
#	   a database that created the extension but never used the map.
#	6. Calls inside an aborted transaction: 25P02, nothing changes (also in
#	   immediate mode).
#	7. A hot standby: the extension is there (replicated catalog), reads
#	   work on an empty map, every writing function fails with 25006 (also
#	   in immediate mode), cmap_stats() works; after promotion writes work.

use strict;
use warnings FATAL => 'all';

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

# Enough memory for values of about 1GB?  The backend holds a few copies
# while storing and checking one, on top of the shared memory.
my $mem_available_kb = 0;
if (open(my $mi, '<', '/proc/meminfo'))
{
	while (<$mi>)
	{
		$mem_available_kb = $1 if /^MemAvailable:\s+(\d+)\s+kB/;
	}
	close($mi);
}
my $gigabyte_ok = $mem_available_kb >= 10 * 1024 * 1024;
note "MemAvailable: $mem_available_kb kB; 1GB values "
  . ($gigabyte_ok ? 'tested' : 'skipped');

my $node = PostgreSQL::Test::Cluster->new('hostile');
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'cmapext'\n"
	  . 'cmapext.max_memory = ' . ($gigabyte_ok ? '1200MB' : '400MB') . "\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION cmapext');

# Run SQL that may fail, with verbose errors; return (stdout, stderr).
sub try_sql
{
	my ($n, $db, $sql) = @_;
	my ($ret, $out, $err) =
	  $n->psql($db, "\\set VERBOSITY verbose\n$sql", on_error_stop => 0);
	return ($out, $err);
}

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub poll_until
{
	my ($n, $db, $query, $secs) = @_;
	$secs //= 60;
	for (my $i = 0; $i < $secs * 10; $i++)
	{
		my ($ret, $out) = $n->psql($db, $query);
		return 1 if $ret == 0 && $out eq 't';
		usleep(100_000);
	}
	diag "timed out after ${secs}s waiting for: $query";
	return 0;
}

############################################################################
# 1. Keys
############################################################################

my $v0 = sql('SELECT cmap_version()');
sql(q{SELECT cmap_store(repeat('k', 1024), 'ascii 1024')});
sql(q{SELECT cmap_store(repeat('é', 512), 'multibyte 1024')});
is( sql(
		q{SELECT octet_length(repeat('é', 512)), cmap_load(repeat('k', 1024)),
				 cmap_load(repeat('é', 512))}),
	'1024|ascii 1024|multibyte 1024',
	'keys of 1024 bytes (ASCII and multibyte) are stored and loaded');
is( sql(
		q{SELECT count(*) FROM cmap_iterate(repeat('k', 1000))
		  WHERE key = repeat('k', 1024) AND value = 'ascii 1024'}),
	1, 'a 1024-byte key is found by a prefix scan');
my $v1 = sql('SELECT cmap_version()');

my @key_calls = (
	q{SELECT cmap_store(%s, 'x')},
	q{SELECT cmap_load(%s)},
	q{SELECT cmap_delete(%s)},
	q{SELECT cmap_swap(%s, 'x')},
	q{SELECT cmap_load_or_store(%s, 'x')},
	q{SELECT cmap_compare_and_swap(%s, 'x', 'y')},
	q{SELECT cmap_compare_and_delete(%s, 'x')},
	q{SELECT cmap_increment(%s)},);
for my $long (q{repeat('k', 1025)}, q{repeat('é', 512) || 'x'})
{
	for my $mode (qw(on off))
	{
		my $sql = "SET cmapext.transactional = $mode;\n"
		  . join(";\n", map { sprintf($_, $long) } @key_calls) . ";\n";
		my ($out, $err) = try_sql($node, 'postgres', $sql);
		my $n = () = $err =~ /ERROR:\s+54000: cmapext key is too long/g;
		is($n, scalar(@key_calls),
			"a 1025-byte key ($long, transactional = $mode) fails with 54000 in every function");
	}
}
is(sql('SELECT cmap_version()'), $v1, 'the 1025-byte keys changed nothing');
is(sql(q{SELECT count(*) FROM cmap_iterate() WHERE octet_length(key) > 1024}),
	0, 'no key over 1024 bytes exists');

# The empty key and the empty value.
for my $mode (qw(on off))
{
	my ($out, $err) = try_sql(
		$node, 'postgres', qq{
SET cmapext.transactional = $mode;
SELECT cmap_store('', '');
SELECT cmap_load('') IS NOT NULL, cmap_load('') = '', cmap_load('nothing') IS NULL;
SELECT count(*) FROM cmap_iterate() WHERE key = '' AND value = '';
SELECT (SELECT key FROM cmap_iterate() LIMIT 1) = '';
SELECT cmap_store('', 'not empty');
SELECT cmap_load('');
SELECT cmap_store('empty-value', '');
SELECT cmap_load('empty-value') = '', cmap_load('empty-value') IS NOT NULL;
SELECT cmap_compare_and_swap('empty-value', '', 'filled');
SELECT cmap_load('empty-value');
SELECT cmap_delete(''), cmap_delete('empty-value');
SELECT cmap_load('') IS NULL, cmap_delete('');
});
	is($err, '', "empty key and value (transactional = $mode): no error");
	is( $out,
		join("\n", '', 't|t|t', '1', 't', '', 'not empty', '', 't|t', 't', 'filled', 't|t', 't|f'),
		"empty key and value (transactional = $mode): round-trip, never NULL");
}

############################################################################
# 2. Huge values
############################################################################

sub settled
{
	my ($n, $db) = @_;
	return poll_until($n, $db,
		q{SELECT pinned_snapshots = 0 AND retained_bytes = 0
			 AND memory_used = map_bytes + free_pool_bytes FROM cmap_stats()});
}

# A 100MB value with position-dependent contents (32-byte md5 blocks).
my $v100_sql = q{(SELECT string_agg(md5(i::text), '') FROM generate_series(1, 3276800) i)};
my ($len100, $md5_100) = split /\|/,
  sql(qq{SELECT length(v), md5(v) FROM $v100_sql AS s(v)});
is($len100, 104857600, 'the 100MB value has 104857600 bytes');

sql(qq{SELECT cmap_store('huge:100MB', v) FROM $v100_sql AS s(v)});
is( sql(q{SELECT length(v), md5(v) FROM (SELECT cmap_load('huge:100MB') v OFFSET 0) s}),
	"$len100|$md5_100",
	'100MB: cmap_load returns it identical');
is( sql(q{SELECT key, length(value), md5(value) FROM cmap_iterate('huge:')}),
	"huge:100MB|$len100|$md5_100",
	'100MB: cmap_iterate returns it identical');

SKIP:
{
	skip 'not enough memory for 1GB values', 5 unless $gigabyte_ok;

	# 1000MB: the 100MB pattern ten times, md5 computed in the same statement
	my ($len1g, $md5_1g) = split /\|/, sql(
		qq{SELECT length(v), md5(v), cmap_store('huge:1000MB', v)
		   FROM (SELECT repeat(p, 10) FROM $v100_sql AS s(p) OFFSET 0) AS t(v)});
	is($len1g, 1048576000, '1000MB: stored');
	is( sql(q{SELECT length(v), md5(v) FROM (SELECT cmap_load('huge:1000MB') v OFFSET 0) s}),
		"$len1g|$md5_1g",
		'1000MB: cmap_load returns it identical');
	is( sql(
			q{SELECT length(value), md5(value) FROM cmap_iterate('huge:1') WHERE key = 'huge:1000MB'}
		),
		"$len1g|$md5_1g",
		'1000MB: cmap_iterate returns it identical');

	# another one does not fit in 1200MB
	my $v_before = sql('SELECT cmap_version()');
	my ($out, $err) = try_sql($node, 'postgres',
		q{SELECT cmap_store('huge:another', repeat('z', 1024 * 1024 * 1000))});
	like($err, qr/ERROR:\s+53200: cmapext shared memory is full/,
		'a second 1000MB value fails with 53200');
	is( sql(
			q{SELECT cmap_version(), cmap_load('huge:another') IS NULL,
					 length(cmap_load('huge:1000MB'))}),
		"$v_before|t|$len1g",
		'the failed store changed nothing, the stored value is intact');
}

sql(q{SELECT cmap_delete('huge:100MB'), cmap_delete('huge:1000MB')});
ok(settled($node, 'postgres'), 'huge values: memory settles after the deletes');
cmp_ok(sql('SELECT memory_used FROM cmap_stats()'), '<', 64 * 1024 * 1024,
	'huge values: their memory is given back');
sql(q{SELECT cmap_store('after-huge', 'ok')});
is(sql(q{SELECT cmap_load('after-huge')}), 'ok', 'the map works after the huge values');

############################################################################
# 3. Settings (a second server, 64MB and 2 databases)
############################################################################

my $tiny = PostgreSQL::Test::Cluster->new('tiny');
$tiny->init;
$tiny->append_conf('postgresql.conf',
	"shared_preload_libraries = 'cmapext'\ncmapext.max_memory = 64MB\ncmapext.max_databases = 2\n");
$tiny->start;

# 100MB does not fit in 64MB.
$tiny->safe_psql('postgres', 'CREATE DATABASE a');
$tiny->safe_psql('a', 'CREATE EXTENSION cmapext');
$tiny->safe_psql('a', q{SELECT cmap_store('small', 'before')});
my $va = $tiny->safe_psql('a', 'SELECT cmap_version()');
for my $mode (qw(on off))
{
	my ($out, $err) = try_sql($tiny, 'a',
		"SET cmapext.transactional = $mode;\nSELECT cmap_store('huge', repeat('h', 100 * 1024 * 1024))"
	);
	like($err, qr/ERROR:\s+53200: cmapext shared memory is full/,
		"64MB map: a 100MB value fails with 53200 (transactional = $mode)");
}
$tiny->safe_psql('a', q{SELECT cmap_store('small', 'after')});
is( $tiny->safe_psql('a', q{SELECT cmap_load('huge') IS NULL, cmap_load('small'), cmap_version()}),
	't|after|' . ($va + 1),
	'64MB map: the failed stores applied nothing, the map goes on');
ok(settled($tiny, 'a'), '64MB map: no memory left behind by the failed stores');

# SET and ALTER SYSTEM.
my @set_cases = (
	[ q{SET cmapext.transactional = 'maybe'}, '22023', 'a non-boolean transactional' ],
	[ q{SET cmapext.max_memory = '1GB'}, '55P02', 'max_memory in a session' ],
	[ q{SET cmapext.max_databases = 4}, '55P02', 'max_databases in a session' ],
	[ q{SET cmapext.persist = off}, '55P02', 'persist in a session' ],
	[ q{SET cmapext.custom_scan = 'sometimes'}, '22023', 'a non-boolean custom_scan' ],
	[ q{SET cmapext.no_such_setting = 1}, '42602', 'an unknown setting with the reserved cmapext prefix' ],
	[ q{ALTER SYSTEM SET cmapext.max_databases = 0}, '22023', 'ALTER SYSTEM max_databases = 0' ],
	[ q{ALTER SYSTEM SET cmapext.max_memory = '-1'}, '22023', q{ALTER SYSTEM max_memory = '-1'} ],
	[ q{ALTER SYSTEM SET cmapext.max_memory = 'abc'}, '22023', q{ALTER SYSTEM max_memory = 'abc'} ],
	[ q{ALTER SYSTEM SET cmapext.persist = 'maybe'}, '22023', q{ALTER SYSTEM persist = 'maybe'} ],);
for my $c (@set_cases)
{
	my ($sql, $state, $what) = @$c;
	my ($out, $err) = try_sql($tiny, 'postgres', $sql);
	like($err, qr/ERROR:\s+$state:/, "$what is rejected with $state");
}
is($tiny->safe_psql('postgres', 'SHOW cmapext.transactional'),
	'on', 'a rejected SET leaves the setting alone');
ok(!-s $tiny->data_dir . '/postgresql.auto.conf'
	  || slurp_file($tiny->data_dir . '/postgresql.auto.conf') !~ /cmapext/,
	'rejected ALTER SYSTEM commands wrote nothing');

# Invalid values in postgresql.conf: the server must not start.
for my $c (
	[ 'cmapext.max_memory', q{'-1'} ],
	[ 'cmapext.max_memory', q{'abc'} ],
	[ 'cmapext.max_databases', '0' ],)
{
	my ($setting, $value) = @$c;
	$tiny->stop;
	$tiny->adjust_conf('postgresql.conf', $setting, $value);
	my $offset = -s $tiny->logfile;
	my $started = $tiny->start(fail_ok => 1);
	my $log = slurp_file($tiny->logfile, $offset);
	ok(!$started, "$setting = $value in postgresql.conf: the server refuses to start");
	like($log, qr/"\Q$setting\E"/, "$setting = $value: the log names the parameter");
	if ($started)
	{
		diag "$setting = $value: started anyway; effective value: "
		  . $tiny->safe_psql('postgres', "SHOW $setting");
		$tiny->stop;
	}
	$tiny->adjust_conf('postgresql.conf', 'cmapext.max_memory', '64MB');
	$tiny->adjust_conf('postgresql.conf', 'cmapext.max_databases', '2');
	$tiny->start;
}
is($tiny->safe_psql('postgres', 'SHOW cmapext.max_memory'),
	'64MB', 'the server starts again with valid settings');

############################################################################
# 4. cmapext.max_databases exhausted (on the small server: 2 databases)
############################################################################

for my $db (qw(b c))
{
	$tiny->safe_psql('postgres', "CREATE DATABASE $db");
	$tiny->safe_psql($db, 'CREATE EXTENSION cmapext');
}
$tiny->safe_psql('a', q{SELECT cmap_store('in-a', 'a')});
$tiny->safe_psql('b', q{SELECT cmap_store('in-b', 'b')});
is($tiny->safe_psql('a', 'SELECT databases FROM cmap_stats()'), 2, 'two maps in use');
for my $call (q{SELECT cmap_store('in-c', 'c')}, q{SELECT cmap_load('in-c')},
	q{SELECT count(*) FROM cmap_iterate()})
{
	my ($out, $err) = try_sql($tiny, 'c', $call);
	like($err, qr/ERROR:\s+53400: too many databases use cmapext/,
		"a third database gets 53400: $call");
	like($err, qr/HINT:.*cmapext\.max_databases/,
		"the hint names cmapext.max_databases: $call");
}
is($tiny->safe_psql('a', q{SELECT cmap_load('in-a'), (SELECT databases FROM cmap_stats())}),
	'a|2', 'the other maps are untouched');
$tiny->safe_psql('postgres', 'DROP DATABASE b');
ok( poll_until(
		$tiny, 'c',
		q{SELECT true FROM (SELECT cmap_store('in-c', 'c')) s}),
	'after DROP DATABASE b, the third database gets a map');
is($tiny->safe_psql('c', q{SELECT cmap_load('in-c'), (SELECT databases FROM cmap_stats())}),
	'c|2', 'the third database works, two maps in use');
is($tiny->safe_psql('a', q{SELECT cmap_load('in-a')}), 'a', 'the first map is intact');
$tiny->stop;

############################################################################
# 5. A database without the extension
############################################################################

my $dbs_before = sql('SELECT databases FROM cmap_stats()');
$node->safe_psql('postgres', 'CREATE DATABASE noext');
for my $call (q{SELECT cmap_store('a', 'b')}, q{SELECT cmap_load('a')},
	q{SELECT * FROM cmap_stats()}, q{SELECT * FROM cmap_iterate()})
{
	my ($out, $err) = try_sql($node, 'noext', $call);
	like($err, qr/ERROR:\s+42883:/, "without the extension, $call fails with 42883");
}
$node->safe_psql('postgres', 'CREATE DATABASE unused');
$node->safe_psql('unused', 'CREATE EXTENSION cmapext');
is(sql('SELECT databases FROM cmap_stats()'), $dbs_before,
	'neither a database without the extension nor an unused one has a map');
$node->safe_psql('unused', q{SELECT cmap_count()});
is(sql('SELECT databases FROM cmap_stats()'), $dbs_before + 1,
	'a database gets its map at its first use');

############################################################################
# 6. Calls inside an aborted transaction
############################################################################

my @all_calls = (
	q{SELECT cmap_store('aborted', 'x')},
	q{SELECT cmap_load('after-huge')},
	q{SELECT cmap_delete('after-huge')},
	q{SELECT cmap_swap('after-huge', 'x')},
	q{SELECT cmap_load_or_store('aborted', 'x')},
	q{SELECT cmap_compare_and_swap('after-huge', 'ok', 'x')},
	q{SELECT cmap_compare_and_delete('after-huge', 'ok')},
	q{SELECT cmap_increment('aborted-n')},
	q{SELECT cmap_clear()},
	q{SELECT cmap_count()},
	q{SELECT cmap_version()},
	q{SELECT * FROM cmap_iterate()},
	q{SELECT * FROM cmap_stats()},);
for my $mode (qw(on off))
{
	my $v = sql('SELECT cmap_version()');
	my ($out, $err) = try_sql(
		$node, 'postgres',
		"SET cmapext.transactional = $mode;\nBEGIN;\nSELECT 1/0;\n"
		  . join(";\n", @all_calls)
		  . ";\nROLLBACK;\n");
	my $n = () = $err =~ /ERROR:\s+25P02:/g;
	is($n, scalar(@all_calls),
		"aborted transaction (transactional = $mode): every call fails with 25P02");
	is( sql(
			q{SELECT cmap_version(), cmap_load('after-huge'), cmap_load('aborted') IS NULL,
					 cmap_load('aborted-n') IS NULL}),
		"$v|ok|t|t",
		"aborted transaction (transactional = $mode): nothing changed");
}

############################################################################
# 7. A hot standby
############################################################################

sql(q{SELECT cmap_store('primary-only', 'p')});
$node->backup('bk');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($node, 'bk', has_streaming => 1);
$standby->start;
$node->safe_psql('postgres', 'CREATE DATABASE later');
$node->safe_psql('later', 'CREATE EXTENSION cmapext');
$node->wait_for_catchup($standby);

is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'the standby is in recovery');
for my $db (qw(postgres later))
{
	is( $standby->safe_psql(
			$db, q{SELECT extversion FROM pg_extension WHERE extname = 'cmapext'}),
		'1.0', "standby: the extension exists in $db");
	is( $standby->safe_psql(
			$db,
			q{SELECT cmap_load('primary-only') IS NULL, cmap_count(), cmap_version(),
					 (SELECT count(*) FROM cmap_iterate())}),
		't|0|0|0',
		"standby: reads work in $db, on an empty map");
	is( $standby->safe_psql(
			$db,
			q{SELECT version, entries, pinned_snapshots, memory_limit > 0, databases >= 1
			  FROM cmap_stats()}),
		'0|0|0|t|t',
		"standby: cmap_stats() works in $db");
}
my @writers = (
	q{SELECT cmap_store('s', 'x')},
	q{SELECT cmap_delete('s')},
	q{SELECT cmap_swap('s', 'x')},
	q{SELECT cmap_load_or_store('s', 'x')},
	q{SELECT cmap_compare_and_swap('s', 'x', 'y')},
	q{SELECT cmap_compare_and_delete('s', 'x')},
	q{SELECT cmap_increment('s')},
	q{SELECT cmap_clear()},);
for my $mode (qw(on off))
{
	for my $w (@writers)
	{
		my ($out, $err) =
		  try_sql($standby, 'postgres', "SET cmapext.transactional = $mode;\n$w");
		like($err, qr/ERROR:\s+25006:/, "standby (transactional = $mode): $w fails with 25006");
	}
}
is($standby->safe_psql('postgres', q{SELECT cmap_count(), cmap_version()}),
	'0|0', 'standby: the failed writes changed nothing');

$standby->promote;
ok(poll_until($standby, 'postgres', 'SELECT NOT pg_is_in_recovery()'),
	'the standby is promoted');
$standby->safe_psql('postgres', q{SELECT cmap_store('promoted', 'yes')});
is($standby->safe_psql('postgres', q{SELECT cmap_load('promoted'), cmap_version()}),
	'yes|1', 'after promotion, writes work');
$standby->stop;

$node->stop;
done_testing();
