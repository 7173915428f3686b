
# Copyright (c) 2026, cmapext developers
#
# 006_persistence.pl
#	The maps across restarts (design.md 2, cmapext.persist; README
#	"clean restart ... the maps come back, versions included"; crash and
#	immediate shutdown: the maps start empty).
#
#	1. Clean restarts, with a smart and with a fast shutdown: two databases
#	   with maps (one with 20000 keys, among them values longer than 512
#	   bytes, a 1MB value, the empty key, an empty value, a 1024-byte key,
#	   multibyte and control characters, entries of several versions; one
#	   small): after the restart every key, value and entry version, the
#	   order, cmap_version() and cmap_stats() are identical, the next commit
#	   gets version + 1, the dump file is gone, the log has the "saved" and
#	   "restored" lines with the right counts.  A map that is empty but has
#	   published versions (cmap_clear()) keeps its version too.
#	2. cmapext.persist = off (ALTER SYSTEM + reload): nothing is saved, the
#	   maps are empty after the restart; a file found at start is removed
#	   with a LOG line and not loaded.
#	3. Crash (kill -9 of a backend): crash restart, the maps are empty and
#	   fully usable; clean restarts save and restore again afterwards.
#	4. Immediate shutdown: the maps start empty, no stale dump is loaded.
#	5. Damaged dump files (a real dump, damaged before the start):
#	   truncations at many offsets, flipped bytes, foreign files, wrong
#	   magic, format and PostgreSQL major version, trailing bytes, absurd
#	   counts, an empty file: the server starts, the log has the WARNING
#	   with a DETAIL, nothing is loaded, the file is removed, the maps are
#	   empty and usable.  The undamaged copy then restores everything.
#	6. A map that does not fit a smaller cmapext.max_memory: the server
#	   starts, a WARNING names that map's database, that map is empty and
#	   usable (its partial restore left no memory behind), the other map is
#	   restored intact.

use strict;
use warnings FATAL => 'all';

use File::Copy;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('persist');
$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'cmapext'\ncmapext.max_memory = 64MB\n"
	  . "restart_after_crash = on\n");
$node->start;

my $dump = $node->data_dir . '/pg_stat/cmapext.dump';

# Three databases with maps; 'postgres' never uses cmapext here, so the
# number of maps in the dump is known.
for my $db (qw(big small cleared))
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, 'CREATE EXTENSION cmapext');
}

# Everything a map holds, as one line: number of entries, a digest of every
# key, value and entry version in iteration order, and the map's version.
sub fingerprint
{
	my ($db) = @_;
	return $node->safe_psql(
		$db, q{
SELECT count(*) || ' entries, digest '
	   || md5(coalesce(string_agg(md5(key) || '/' || md5(value) || '/'
								  || coalesce(version::text, 'null'), ','), ''))
	   || ', version ' || cmap_version()
	   || ', stats ' || (SELECT version || '/' || entries FROM cmap_stats())
FROM cmap_iterate()});
}

sub is_empty_map
{
	my ($db, $name) = @_;
	is( $node->safe_psql(
			$db,
			q{SELECT cmap_count(), cmap_version(), (SELECT count(*) FROM cmap_iterate()),
					 (SELECT version || '/' || entries FROM cmap_stats())}),
		'0|0|0|0/0',
		"$name: the map of $db is empty, at version 0");
}

# A map is usable: a large (more than 64 keys) and a small commit, reads,
# iteration, a conditional operation and an increment.
sub is_usable
{
	my ($db, $name) = @_;
	my $v = $node->safe_psql($db, 'SELECT cmap_version()');
	my ($ret, $out, $err) = $node->psql(
		$db, q{
BEGIN;
SELECT count(cmap_store('use:' || i, repeat('u', i * 10))) FROM generate_series(1, 100) i;
COMMIT;
SELECT cmap_store('use:small', 'ok');
SELECT cmap_load_or_store('use:los', 'first');
SELECT cmap_increment('use:n', 5);
});
	is($err, '', "$name: writes to the map of $db work");
	is( $node->safe_psql(
			$db,
			q{SELECT cmap_version(), (SELECT count(*) FROM cmap_iterate('use:')),
					 cmap_load('use:small'), cmap_load('use:los'), cmap_load('use:n'),
					 length(cmap_load('use:100'))}),
		($v + 4) . '|103|ok|first|5|1000',
		"$name: the map of $db is usable (4 commits, 4 new versions)");
	$node->safe_psql(
		$db, q{SELECT count(cmap_delete(key)) FROM cmap_iterate('use:')});
}

sub log_offset { return -s $node->logfile; }

sub log_since
{
	my ($offset) = @_;
	return slurp_file($node->logfile, $offset);
}

# Write a file byte for byte.
sub write_file
{
	my ($path, $bytes) = @_;
	open(my $fh, '>:raw', $path) or die "could not write $path: $!";
	print $fh $bytes;
	close($fh) or die "could not close $path: $!";
	return;
}

sub read_file
{
	my ($path) = @_;
	open(my $fh, '<:raw', $path) or die "could not read $path: $!";
	local $/;
	my $bytes = <$fh>;
	close($fh);
	return $bytes;
}

############################################################################
# Data
############################################################################

# big: 20000 keys over several commits.
$node->safe_psql(
	'big', q{
BEGIN;
SELECT count(cmap_store(format('k%s', lpad(i::text, 5, '0')),
						CASE WHEN i % 5 = 0 THEN repeat(md5(i::text), 17 + i % 40)
							 ELSE 'v' || i END))
FROM generate_series(1, 19992) i;
SELECT cmap_store('', 'the empty key');
SELECT cmap_store('empty-value', '');
SELECT cmap_store(repeat('K', 1024), 'a key of 1024 bytes');
SELECT cmap_store('big-value', repeat(md5('big'), 32768));          -- 1MB
SELECT cmap_store('ünïcødé ключ', 'välüe 值');
SELECT cmap_store(E'ctl\001\t\n', E'x\001y');
COMMIT;
BEGIN;
SELECT count(cmap_store(format('k%s', lpad(i::text, 5, '0')), repeat('w', 600 + i % 7)))
FROM generate_series(7, 19990, 7) i;
SELECT count(cmap_delete(format('k%s', lpad(i::text, 5, '0'))))
FROM generate_series(100, 1000, 100) i;
SELECT count(cmap_store('n' || i, 'new ' || i)) FROM generate_series(1, 12) i;
COMMIT;
});
$node->safe_psql('big', q{SELECT cmap_increment('counter', 40)});
$node->safe_psql('big', q{SELECT cmap_increment('counter', 2)});
# the last commit only deletes: the map's version is above every entry's
$node->safe_psql('big', q{SELECT cmap_delete('n12')});

is( $node->safe_psql(
		'big',
		q{SELECT count(*), count(*) FILTER (WHERE length(value) > 512) > 6000,
				 max(length(value)), count(DISTINCT version), max(version) < cmap_version()
		  FROM cmap_iterate()}),
	'20000|t|1048576|3|t',
	'big: 20000 keys, over 6000 values over 512 bytes, one of 1MB, 3 entry versions');

# small: a few keys, two commits.
$node->safe_psql('small', q{SELECT cmap_store('a', '1'), cmap_store('b', '2')});
$node->safe_psql('small', q{SELECT cmap_swap('a', 'one')});

# cleared: published versions, no entries.
$node->safe_psql('cleared', q{SELECT cmap_store('x', '1')});
$node->safe_psql('cleared', q{SELECT cmap_store('y', '2')});
$node->safe_psql('cleared', q{SELECT cmap_clear()});
is($node->safe_psql('cleared', 'SELECT cmap_version(), cmap_count()'),
	'3|0', 'cleared: version 3, no entries');

my $nentries = 20000 + 2;
my $nmaps = 3;

############################################################################
# 1. Clean restarts: smart and fast
############################################################################

for my $mode (qw(smart fast))
{
	my %before = map { $_ => fingerprint($_) } qw(big small cleared);
	my %version =
	  map { $_ => $node->safe_psql($_, 'SELECT cmap_version()') } qw(big small cleared);

	my $offset = log_offset();
	$node->stop($mode);
	ok(-f $dump, "$mode: the dump file exists after the shutdown");
	like(
		log_since($offset),
		qr/LOG:  cmapext: saved $nentries entries in $nmaps maps to "pg_stat\/cmapext.dump"/,
		"$mode: the log says what was saved");

	$offset = log_offset();
	$node->start;
	like(
		log_since($offset),
		qr/LOG:  cmapext: restored $nentries entries in $nmaps maps from "pg_stat\/cmapext.dump"/,
		"$mode: the log says what was restored");
	unlike(log_since($offset), qr/WARNING/, "$mode: no warning at start");
	ok(!-e $dump, "$mode: the dump file is removed after the start");

	for my $db (qw(big small cleared))
	{
		is(fingerprint($db), $before{$db},
			"$mode: $db has the same entries, entry versions, order and version");
	}

	# The next commit continues the version sequence.
	for my $db (qw(big small cleared))
	{
		$node->safe_psql($db, "SELECT cmap_store('after-$mode', '$mode')");
		is( $node->safe_psql(
				$db,
				"SELECT cmap_version(), version FROM cmap_iterate('after-$mode')"),
			($version{$db} + 1) . '|' . ($version{$db} + 1),
			"$mode: the next commit in $db gets version + 1");
		$node->safe_psql($db, "SELECT cmap_delete('after-$mode')");
	}
}

############################################################################
# 2. cmapext.persist = off
############################################################################

sub set_persist
{
	my ($value) = @_;
	if (defined $value)
	{
		$node->safe_psql('postgres', "ALTER SYSTEM SET cmapext.persist = $value");
	}
	else
	{
		$node->safe_psql('postgres', 'ALTER SYSTEM RESET cmapext.persist');
		$value = 'on';
	}
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	# a new backend inherits the postmaster's settings: once it sees the
	# new value, the postmaster has it too
	ok($node->poll_query_until('postgres', 'SHOW cmapext.persist', $value),
		"cmapext.persist is $value after reload");
	return;
}

set_persist('off');
my $offset = log_offset();
$node->stop('fast');
ok(!-e $dump, 'persist off: no dump file after a clean shutdown');
unlike(log_since($offset), qr/cmapext: saved/, 'persist off: nothing saved');
$offset = log_offset();
$node->start;
unlike(log_since($offset), qr/cmapext: restored/, 'persist off: nothing restored');
is_empty_map($_, 'persist off') for qw(big small cleared);
is_usable('big', 'persist off');

# A file found at start while persist is off is removed, not loaded.
set_persist(undef);
$node->safe_psql('big',
	q{SELECT count(cmap_store('left:' || i, 'over ' || i)) FROM generate_series(1, 500) i});
$node->safe_psql('small', q{SELECT cmap_store('left', 'over')});
my %left = map { $_ => fingerprint($_) } qw(big small);
$node->stop('fast');
ok(-f $dump, 'persist on again: the dump is written');
my $saved = $node->basedir . '/leftover.dump';
copy($dump, $saved) or die "copy failed: $!";
$node->start;
is(fingerprint('big'), $left{big}, 'persist on again: the maps are restored');
set_persist('off');
$node->stop('fast');
ok(!-e $dump, 'persist off: no new dump');
copy($saved, $dump) or die "copy failed: $!";
$offset = log_offset();
$node->start;
like(
	log_since($offset),
	qr/LOG:  cmapext: removing saved maps because "cmapext.persist" is off/,
	'persist off: a leftover dump is removed with a LOG line');
unlike(log_since($offset), qr/cmapext: restored/, 'persist off: the leftover dump is not loaded');
ok(!-e $dump, 'persist off: the leftover dump file is gone');
is_empty_map($_, 'persist off, leftover dump') for qw(big small);
set_persist(undef);

############################################################################
# 3. Crash: kill -9 of a backend
############################################################################

$node->safe_psql('big',
	q{SELECT count(cmap_store('pre-crash:' || i, 'c' || i)) FROM generate_series(1, 1000) i});
$node->safe_psql('small', q{SELECT cmap_store('pre-crash', 'c')});
is($node->safe_psql('big', q{SELECT count(*) FROM cmap_iterate('pre-crash:')}),
	'1000', 'crash: data before the crash');

my $victim = $node->background_psql('big');
my $victim_pid = $victim->query_safe('SELECT pg_backend_pid()');
# the victim holds a pin and has pending writes when it dies
$victim->query_safe(
	q{BEGIN; SELECT cmap_store('pending', 'x'); SELECT count(*) FROM cmap_iterate()});
$offset = log_offset();
is(kill('KILL', $victim_pid), 1, 'crash: SIGKILL sent to a backend');
eval { $victim->quit; };

$node->wait_for_log(qr/reinitializing.*ready to accept connections/s, $offset);
ok($node->poll_query_until('big', 'SELECT true'), 'crash: the server is back');
my $crash_log = log_since($offset);
like($crash_log, qr/terminated by signal 9/, 'crash: the postmaster saw the backend die');
like($crash_log, qr/all server processes terminated; reinitializing/,
	'crash: the server reinitialised (crash restart)');
unlike($crash_log, qr/cmapext: (saved|restored)/, 'crash: nothing saved or restored');
ok(!-e $dump, 'crash: no dump file');
is_empty_map($_, 'after the crash') for qw(big small cleared);
is_usable($_, 'after the crash') for qw(big small);
is($node->safe_psql('big', 'SELECT pinned_snapshots, databases FROM cmap_stats()'),
	'0|3', 'after the crash: no pin, three maps in use');

# Clean restarts work again after the crash restart.
$node->safe_psql('big', q{SELECT cmap_store('post-crash', 'p')});
my $post_crash = fingerprint('big');
$offset = log_offset();
$node->stop('fast');
$node->start;
like(log_since($offset), qr/cmapext: saved 1 entries in 3 maps/,
	'after the crash: a clean shutdown saves');
like(log_since($offset), qr/cmapext: restored 1 entries in 3 maps/,
	'after the crash: the next start restores');
is(fingerprint('big'), $post_crash, 'after the crash: the map survives a clean restart');

############################################################################
# 4. Immediate shutdown
############################################################################

# The map now holds restored data (from a dump that was consumed at start)
# and newer writes; neither may come back after an immediate shutdown.
$node->safe_psql('big', q{SELECT cmap_store('pre-immediate', 'i')});
$node->safe_psql('small', q{SELECT cmap_store('pre-immediate', 'i')});
$offset = log_offset();
$node->stop('immediate');
ok(!-e $dump, 'immediate: no dump file');
$node->start;
unlike(log_since($offset), qr/cmapext: (saved|restored)/,
	'immediate: nothing saved or restored');
is_empty_map($_, 'after an immediate shutdown') for qw(big small);
is_usable('big', 'after an immediate shutdown');

############################################################################
# 5. Damaged dump files
############################################################################

# A real dump: big, small (a few keys) and cleared.
$node->safe_psql(
	'big', q{
SELECT count(cmap_store(format('d%s', lpad(i::text, 5, '0')),
						CASE WHEN i % 3 = 0 THEN repeat('L', 700) ELSE 'd' || i END))
FROM generate_series(1, 3000) i;
SELECT cmap_store('dump-big-value', repeat('B', 100000));
});
$node->safe_psql('small', q{SELECT cmap_store('s1', 'x'), cmap_store('s2', 'y')});
my %good = map { $_ => fingerprint($_) } qw(big small);
$node->stop('fast');
my $good_copy = $node->basedir . '/good.dump';
copy($dump, $good_copy) or die "copy failed: $!";
my $good_bytes = read_file($good_copy);
my $size = length($good_bytes);
cmp_ok($size, '>', 800_000, "damage: the dump has $size bytes");
is(unpack('L', substr($good_bytes, 8, 4)), 15,
	'damage: the header names PostgreSQL 15 at bytes 8..11');
my $good_maps = unpack('L', substr($good_bytes, 12, 4));
is($good_maps, 2, 'damage: the dump holds the maps of big and small');

# Layout: header 16 bytes (magic, format, PG major, maps), per map a 24-byte
# header, per entry a 24-byte header then key and value; then "END!" and a
# CRC-32C.
sub flip
{
	my ($bytes, $pos) = @_;
	substr($bytes, $pos, 1) = chr(ord(substr($bytes, $pos, 1)) ^ 0xff);
	return $bytes;
}

sub patch32
{
	my ($bytes, $pos, $value) = @_;
	substr($bytes, $pos, 4) = pack('L', $value);
	return $bytes;
}

srand(20260);
my $random = join('', map { chr(int(rand(256))) } 1 .. 8192);
substr($random, 0, 4) = 'RAND';    # never "CMAP" by chance

my @damages = (
	[ 'an empty file', '', qr/truncated or corrupted/ ],
	[ 'a partial header (10 bytes)', substr($good_bytes, 0, 10), qr/truncated or corrupted/ ],
	[ 'the header only (16 bytes)', substr($good_bytes, 0, 16), qr/truncated or corrupted/ ],
	[
		'a cut inside the first map header', substr($good_bytes, 0, 16 + 12),
		qr/truncated or corrupted/
	],
	[
		'a cut inside the first entry header', substr($good_bytes, 0, 16 + 24 + 10),
		qr/truncated or corrupted/
	],
	[
		'a cut inside the first entry', substr($good_bytes, 0, 16 + 24 + 24 + 3),
		qr/truncated or corrupted/
	],
	[ 'a cut in the middle', substr($good_bytes, 0, int($size / 2)), qr/truncated or corrupted/ ],
	[ 'a cut before the end marker', substr($good_bytes, 0, $size - 8), qr/truncated or corrupted/ ],
	[ 'a cut before the CRC', substr($good_bytes, 0, $size - 4), qr/truncated or corrupted/ ],
	[ 'a cut inside the CRC', substr($good_bytes, 0, $size - 1), qr/truncated or corrupted/ ],
	[ 'one flipped byte in the middle', flip($good_bytes, int($size / 2)), qr/corrupted/ ],
	[ 'one flipped byte near the start', flip($good_bytes, 16 + 24 + 24 + 1), qr/corrupted/ ],
	[ 'one flipped byte in the CRC', flip($good_bytes, $size - 2), qr/checksum mismatch/ ],
	[ 'a trailing byte', $good_bytes . "\0", qr/trailing bytes/ ],
	[ 'random bytes', $random, qr/not a cmapext dump/ ],
	[ 'a text file', "this is not a dump\n" x 100, qr/not a cmapext dump/ ],
	[ 'a wrong magic', flip($good_bytes, 0), qr/not a cmapext dump/ ],
	[ 'a wrong format version', patch32($good_bytes, 4, 2), qr/has format 2 from PostgreSQL/ ],
	[
		'a wrong PostgreSQL major version', patch32($good_bytes, 8, 14),
		qr/format 1 from PostgreSQL 14; this server reads format 1 from PostgreSQL 15\./
	],
	[ 'an absurd number of maps', patch32($good_bytes, 12, 0xffffffff), qr/impossible number of maps/ ],
	[ 'one map too many', patch32($good_bytes, 12, $good_maps + 1), qr/truncated or corrupted/ ],
	[ 'one map too few', patch32($good_bytes, 12, $good_maps - 1), qr/corrupted/ ],
	[ 'a bad map marker', patch32($good_bytes, 16, 0), qr/bad map header/ ],
	[ 'a huge entry count', patch32($good_bytes, 16 + 16, 0x7fffffff), qr/corrupted/ ],
	[ 'a huge key length', patch32($good_bytes, 16 + 24, 100000), qr/bad entry/ ],
	[ 'a huge value length', patch32($good_bytes, 16 + 24 + 12, 0x7fff), qr/corrupted/ ],
);

for my $d (@damages)
{
	my ($what, $bytes, $detail) = @$d;

	write_file($dump, $bytes);
	$offset = log_offset();
	ok($node->start(fail_ok => 1), "$what: the server starts");
	my $log = log_since($offset);
	like(
		$log,
		qr/WARNING:  cmapext: ignoring saved maps in file "pg_stat\/cmapext.dump"\n[^\n]*DETAIL:  [^\n]*$detail/,
		"$what: WARNING with the expected DETAIL");
	unlike($log, qr/cmapext: restored/, "$what: nothing restored");
	ok(!-e $dump, "$what: the file is removed");
	is( $node->safe_psql(
			'big', q{SELECT cmap_count(), cmap_version(), (SELECT databases FROM cmap_stats())}),
		'0|0|1', "$what: the map of big is empty at version 0");
	is($node->safe_psql('small', q{SELECT cmap_count(), cmap_version()}),
		'0|0', "$what: the map of small is empty at version 0");
	$node->safe_psql('big', q{SELECT cmap_store('still', 'works')});
	is($node->safe_psql('big', q{SELECT cmap_load('still'), cmap_version()}),
		'works|1', "$what: the map is usable");
	$node->stop('immediate');
}

# The undamaged copy restores everything.
copy($good_copy, $dump) or die "copy failed: $!";
$offset = log_offset();
$node->start;
like(log_since($offset), qr/cmapext: restored 3003 entries in 2 maps/,
	'the undamaged dump restores');
is(fingerprint($_), $good{$_}, "the undamaged dump restores $_ exactly") for qw(big small);

############################################################################
# 6. A map that does not fit a smaller cmapext.max_memory
############################################################################

$node->safe_psql('big', q{SELECT cmap_clear()});
$node->safe_psql('big',
	q{SELECT count(cmap_store('fat:' || i, repeat('F', 1000))) FROM generate_series(1, 30000) i});
cmp_ok($node->safe_psql('big', 'SELECT map_bytes FROM cmap_stats()'),
	'>', 30_000_000, 'big holds more than 30MB');
my %fit = map { $_ => fingerprint($_) } qw(small);
my $small_count = $node->safe_psql('small', 'SELECT cmap_count()');
my $cleared_count = $node->safe_psql('cleared', 'SELECT cmap_count()');
my $big_oid =
  $node->safe_psql('postgres', q{SELECT oid FROM pg_database WHERE datname = 'big'});
$node->stop('fast');
$node->append_conf('postgresql.conf', "cmapext.max_memory = 8MB\n");
$offset = log_offset();
ok($node->start(fail_ok => 1), 'smaller max_memory: the server starts');
my $fit_log = log_since($offset);
like(
	$fit_log,
	qr/WARNING:  cmapext: could not restore the map of database $big_oid: cmapext shared memory is full/,
	'smaller max_memory: a WARNING names the map that does not fit');
my $restored = $small_count + $cleared_count;
like($fit_log, qr/cmapext: restored $restored entries in 2 maps/,
	'smaller max_memory: the other maps are restored');
is($node->safe_psql('big', 'SELECT memory_limit FROM cmap_stats()'),
	8 * 1024 * 1024, 'smaller max_memory: the limit is 8MB');
is($node->safe_psql('big', 'SELECT cmap_count(), (SELECT entries FROM cmap_stats())'),
	'0|0', 'smaller max_memory: the map of big is empty');
is(fingerprint('small'), $fit{small}, 'smaller max_memory: small is restored intact');
# Settled, the memory in use is exactly the maps' plus the free node pool:
# the failed restore left nothing behind (nodes or values).
my %map_bytes =
  map { $_ => $node->safe_psql($_, 'SELECT map_bytes FROM cmap_stats()') }
  qw(big small cleared);
my ($used, $pool) = split /\|/,
  $node->safe_psql('big', 'SELECT memory_used, free_pool_bytes FROM cmap_stats()');
is( $used,
	$map_bytes{big} + $map_bytes{small} + $map_bytes{cleared} + $pool,
	'smaller max_memory: memory in use is the maps\' plus the free pool (nothing leaked)');
# 5MB of values: only fits if the failed restore gave its memory back
my ($refill_ret, $refill_out, $refill_err) = $node->psql('big',
	q{SELECT count(cmap_store('refill:' || i, repeat('R', 1000))) FROM generate_series(1, 5000) i});
is($refill_err, '', 'smaller max_memory: 5MB of values fit in the 8MB map after the failed restore');
is($node->safe_psql('big', q{SELECT count(*) FROM cmap_iterate('refill:')}),
	$refill_ret == 0 ? 5000 : 0, 'smaller max_memory: the store applied all or nothing');
$node->safe_psql('big', q{SELECT count(cmap_delete(key)) FROM cmap_iterate('refill:')});
is_usable('big', 'smaller max_memory');

############################################################################
# 7. More saved maps than cmapext.max_databases
############################################################################

$node->safe_psql($_, qq{SELECT cmap_store('seven', '$_')}) for qw(big small cleared);
$offset = log_offset();
$node->stop('fast');
like(log_since($offset), qr/cmapext: saved \d+ entries in 3 maps/, 'fewer slots: three maps saved');
$node->append_conf('postgresql.conf', "cmapext.max_memory = 64MB\ncmapext.max_databases = 1\n");
$offset = log_offset();
ok($node->start(fail_ok => 1), 'fewer slots: the server starts');
my $slots_log = log_since($offset);
my $nwarn = () = $slots_log =~
  /WARNING:  cmapext: could not restore the map of database \d+: too many databases use cmapext/g;
is($nwarn, 2, 'fewer slots: a WARNING for each map that has no slot');
like($slots_log, qr/cmapext: restored \d+ entries in 1 maps/, 'fewer slots: one map restored');
my @kept = grep {
	my ($r, $o) = $node->psql($_, q{SELECT cmap_load('seven')});
	$r == 0 && $o eq $_
} qw(big small cleared);
is(scalar(@kept), 1, 'fewer slots: exactly one database has its map back (' . join(',', @kept) . ')');

$node->stop('fast');
done_testing();
