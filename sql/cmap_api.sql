--
-- cmap_api: every function of the cmapext API and its return values.
--
-- Covers store, load, delete, swap, load_or_store, compare_and_swap,
-- compare_and_delete, increment, clear, count, version, iterate and stats.
-- Versions are checked relative to a version captured at the start: every
-- committing transaction that changes the map publishes exactly one new
-- version, one that changes nothing publishes none.
--
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS cmapext;
CREATE EXTENSION cmapext;
RESET client_min_messages;

-- the API as installed: signatures, defaults and result types
SELECT p.oid::regprocedure AS function,
       CASE WHEN p.proname = 'cmap_stats' THEN '(see below)'
            ELSE pg_get_function_arguments(p.oid) END AS arguments,
       pg_get_function_result(p.oid) AS result
FROM pg_proc p
JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
JOIN pg_extension e ON d.refclassid = 'pg_extension'::regclass
     AND d.refobjid = e.oid AND d.deptype = 'e'
WHERE e.extname = 'cmapext'
ORDER BY p.proname COLLATE "C";

-- a fresh extension starts empty
SELECT cmap_count();
SELECT count(*) FROM cmap_iterate();
SELECT cmap_version() AS v0 \gset
SELECT committed_versions AS c0 FROM cmap_stats() \gset

--
-- store / load
--
SELECT cmap_store('alpha', '1');
SELECT cmap_load('alpha');
SELECT cmap_load('missing') IS NULL AS absent;
SELECT cmap_version() - :v0 AS dv;                          -- 1
SELECT cmap_store('alpha', 'one');                          -- overwrite
SELECT cmap_load('alpha');
SELECT cmap_version() - :v0 AS dv;                          -- 2
-- storing the value a key already has is still a write: new version
SELECT cmap_store('alpha', 'one');
SELECT cmap_version() - :v0 AS dv;                          -- 3
SELECT key, value, version - :v0 AS dv FROM cmap_iterate();
-- empty value and values with special characters round-trip
SELECT cmap_store('empty', '');
SELECT cmap_load('empty') = '' AS is_empty_string;
SELECT cmap_store('quote''s', E'line1\nline2\ttab "q" \\');
SELECT cmap_load('quote''s') = E'line1\nline2\ttab "q" \\' AS same;
SELECT cmap_version() - :v0 AS dv;                          -- 5
SELECT cmap_count();                                        -- 3

--
-- delete: true only when the key existed; deleting an absent key
-- publishes nothing
--
SELECT cmap_delete('empty');
SELECT cmap_version() - :v0 AS dv;                          -- 6
SELECT cmap_delete('empty');
SELECT cmap_delete('never-there');
SELECT cmap_version() - :v0 AS dv;                          -- 6
BEGIN;
SELECT cmap_delete('absent-1'), cmap_delete('absent-2');
COMMIT;
SELECT cmap_version() - :v0 AS dv;                          -- 6
SELECT cmap_delete('quote''s');
SELECT cmap_count();                                        -- 1

--
-- swap: stores and returns the previous value (NULL when absent)
--
SELECT cmap_swap('alpha', 'two');
SELECT cmap_swap('beta', 'b1') IS NULL AS was_absent;
SELECT cmap_swap('beta', 'b2');
SELECT cmap_load('alpha'), cmap_load('beta');
SELECT cmap_version() - :v0 AS dv;                          -- 10

--
-- load_or_store: the existing value (no write), or the given value after
-- storing it
--
SELECT cmap_load_or_store('alpha', 'ignored');
SELECT cmap_load('alpha');
SELECT cmap_version() - :v0 AS dv;                          -- 10
SELECT cmap_load_or_store('gamma', 'g1');
SELECT cmap_load('gamma');
SELECT cmap_version() - :v0 AS dv;                          -- 11

--
-- compare_and_swap / compare_and_delete: apply only on an exact match;
-- a failed comparison writes nothing
--
SELECT cmap_compare_and_swap('gamma', 'g1', 'g2');
SELECT cmap_load('gamma');
SELECT cmap_version() - :v0 AS dv;                          -- 12
SELECT cmap_compare_and_swap('gamma', 'g1', 'g3');         -- stale old value
SELECT cmap_compare_and_swap('gamma', 'G2', 'g3');         -- comparison is exact
SELECT cmap_compare_and_swap('nokey', '', 'x');            -- absent is not ''
SELECT cmap_load('gamma'), cmap_load('nokey') IS NULL AS nokey_absent;
SELECT cmap_version() - :v0 AS dv;                          -- 12
SELECT cmap_compare_and_delete('gamma', 'g1');
SELECT cmap_compare_and_delete('nokey', 'x');
SELECT cmap_version() - :v0 AS dv;                          -- 12
SELECT cmap_compare_and_delete('gamma', 'g2');
SELECT cmap_load('gamma') IS NULL AS gamma_gone;
SELECT cmap_version() - :v0 AS dv;                          -- 13

--
-- increment: absent counts as 0, default delta 1, explicit and negative
-- deltas, the value is stored as text
--
SELECT cmap_increment('ctr');
SELECT cmap_increment('ctr');
SELECT cmap_increment('ctr', 10);
SELECT cmap_increment('ctr', -20);
SELECT cmap_increment('ctr', 0);
SELECT cmap_load('ctr');
SELECT cmap_increment('neg', -5);
SELECT cmap_store('spaced', ' 41 ');
SELECT cmap_increment('spaced');
SELECT cmap_load('spaced');
SELECT cmap_store('big', '9223372036854775806');
SELECT cmap_increment('big');
SELECT cmap_increment('big', -9223372036854775807);
SELECT cmap_version() - :v0 AS dv;                          -- 24

--
-- count, iterate: columns and the versions of the commits that wrote
-- each entry
--
SELECT cmap_count();
SELECT key, value, version - :v0 AS dv FROM cmap_iterate();
-- one transaction writing several keys publishes one version, and all
-- its entries carry it
BEGIN;
SELECT cmap_store('m1', 'x'), cmap_store('m2', 'y');
SELECT cmap_increment('ctr', 100);
SELECT cmap_delete('neg');
-- own uncommitted writes have no version yet (NULL)
SELECT key, value, version IS NULL AS own_write FROM cmap_iterate();
SELECT cmap_count();
COMMIT;
SELECT cmap_version() - :v0 AS dv;                          -- 25
SELECT key, value, version - :v0 AS dv FROM cmap_iterate();
-- prefix argument (details in cmap_order)
SELECT key FROM cmap_iterate('m');
SELECT key FROM cmap_iterate(prefix => 'b');

--
-- version: read-only transactions publish nothing
--
BEGIN;
SELECT cmap_load('alpha'), cmap_count();
SELECT count(*) FROM cmap_iterate();
COMMIT;
SELECT cmap_version() - :v0 AS dv;                          -- 25
-- a rolled-back transaction publishes nothing
BEGIN;
SELECT cmap_store('rolled', 'back');
ROLLBACK;
SELECT cmap_version() - :v0 AS dv;                          -- 25
SELECT cmap_load('rolled') IS NULL AS not_there;
-- nor does one whose writes change nothing, however many keys it touches
SELECT count(*) FILTER (WHERE cmap_delete('absent' || i)) AS deleted
FROM generate_series(1, 100) AS i;
SELECT count(*) FILTER (WHERE cmap_compare_and_swap('absent' || i, 'a', 'b')) AS swapped
FROM generate_series(1, 100) AS i;
BEGIN;
SELECT cmap_store('tmp', 'x'), cmap_delete('tmp');
COMMIT;
SELECT cmap_version() - :v0 AS dv;                          -- 25
-- cmap_version() inside a transaction is the version it reads, not its own
BEGIN;
SELECT cmap_store('inside', 'x');
SELECT cmap_version() - :v0 AS dv;                          -- 25
COMMIT;
SELECT cmap_version() - :v0 AS dv;                          -- 26

--
-- stats: column names and types, deterministic values
--
SELECT a.name, a.type::regtype
FROM pg_proc p,
     unnest(p.proargnames, p.proallargtypes) WITH ORDINALITY AS a(name, type, n)
WHERE p.oid = 'cmap_stats()'::regprocedure
ORDER BY a.n;
SELECT entries = cmap_count() AS entries_ok,
       version - :v0 AS dv,
       committed_versions - :c0 AS dcommits,
       memory_limit = 64 * 1024 * 1024 AS limit_is_64mb,
       memory_used > 0 AS uses_memory,
       memory_used <= memory_limit AS within_limit,
       pinned_snapshots,
       oldest_pinned_version IS NULL AS no_oldest,
       map_bytes > 0 AS has_map_bytes,
       tree_height,
       retained_bytes >= 0 AND reclaimed_bytes >= 0 AND reclaim_runs >= 0
         AND free_pool_bytes >= 0 AS counters_ok,
       databases >= 1 AS has_databases
FROM cmap_stats();
SELECT entries FROM cmap_stats();
-- stats describe the latest committed version, not the caller's view
BEGIN;
SELECT cmap_store('pending', 'p');
SELECT entries, version - :v0 AS dv FROM cmap_stats();
SELECT cmap_count();
ROLLBACK;
-- a snapshot pinned by a REPEATABLE READ transaction shows in the stats
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT cmap_count();
SELECT pinned_snapshots, oldest_pinned_version - :v0 AS dv FROM cmap_stats();
COMMIT;
SELECT pinned_snapshots, oldest_pinned_version IS NULL AS no_oldest FROM cmap_stats();
-- an open cursor keeps its statement's pin until it is closed
BEGIN;
DECLARE c CURSOR FOR SELECT key FROM cmap_iterate();
FETCH 1 FROM c;
SELECT pinned_snapshots FROM cmap_stats();
CLOSE c;
SELECT pinned_snapshots FROM cmap_stats();
COMMIT;
-- LIMIT ends the scan early without leaking its pin
SELECT key FROM cmap_iterate() LIMIT 1;
SELECT pinned_snapshots FROM cmap_stats();

--
-- clear: returns the number of keys removed
--
SELECT cmap_count();
SELECT cmap_clear();
SELECT cmap_count();
SELECT cmap_version() - :v0 AS dv;                          -- 27
SELECT entries, map_bytes, tree_height FROM cmap_stats();
-- clearing an empty map removes nothing and publishes nothing
SELECT cmap_clear();
SELECT cmap_version() - :v0 AS dv;                          -- 27
-- clear counts the transaction's own writes too
BEGIN;
SELECT cmap_store('c1', '1'), cmap_store('c2', '2'), cmap_store('c3', '3');
SELECT cmap_clear();
SELECT cmap_count();
SELECT cmap_store('c4', '4');
COMMIT;
SELECT key, value, version - :v0 AS dv FROM cmap_iterate();  -- c4 at 28
SELECT committed_versions - :c0 AS dcommits FROM cmap_stats();
SELECT cmap_clear();
