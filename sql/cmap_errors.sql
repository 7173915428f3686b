--
-- cmap_errors: every error path of the API, with its SQLSTATE, and the
-- promise that a failed call changes nothing.
--
-- NULL arguments (22004), keys over 1024 bytes (54000), increments of
-- non-integers (22P02) and overflows (22003), writes in read-only
-- transactions (25006), PREPARE TRANSACTION after map writes (0A000), and
-- too many versions pinned by one session (53400).
--
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS cmapext;
CREATE EXTENSION cmapext;
RESET client_min_messages;

-- try(sql): run sql, report 'ok' or its SQLSTATE, message and detail
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  st text; msg text; det text;
BEGIN
  EXECUTE q;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                          det = PG_EXCEPTION_DETAIL;
  RETURN st || ': ' || msg || coalesce(' [' || nullif(det, '') || ']', '');
END $$;

SELECT cmap_store('existing', 'e');
SELECT cmap_version() AS v0 \gset

--
-- NULL key, value, old, new or delta: 22004, for every function taking one
--
SELECT q, pg_temp.try(q) AS result FROM (VALUES
  ('SELECT cmap_store(NULL, ''v'')'),
  ('SELECT cmap_store(''k'', NULL)'),
  ('SELECT cmap_store(''existing'', NULL)'),
  ('SELECT cmap_load(NULL)'),
  ('SELECT cmap_delete(NULL)'),
  ('SELECT cmap_swap(NULL, ''v'')'),
  ('SELECT cmap_swap(''existing'', NULL)'),
  ('SELECT cmap_load_or_store(NULL, ''v'')'),
  ('SELECT cmap_load_or_store(''k'', NULL)'),
  ('SELECT cmap_load_or_store(''existing'', NULL)'),
  ('SELECT cmap_compare_and_swap(NULL, ''a'', ''b'')'),
  ('SELECT cmap_compare_and_swap(''existing'', NULL, ''b'')'),
  ('SELECT cmap_compare_and_swap(''existing'', ''e'', NULL)'),
  ('SELECT cmap_compare_and_delete(NULL, ''e'')'),
  ('SELECT cmap_compare_and_delete(''existing'', NULL)'),
  ('SELECT cmap_increment(NULL)'),
  ('SELECT cmap_increment(NULL, 1)'),
  ('SELECT cmap_increment(''k'', NULL)')
) AS calls(q);
-- NULL raises the error also at top level, and not only through try()
SELECT cmap_store(NULL, 'v');
\echo :LAST_ERROR_SQLSTATE
SELECT cmap_increment('k', NULL);
\echo :LAST_ERROR_SQLSTATE
-- a NULL prefix is not an error: it means no filter
SELECT key FROM cmap_iterate(NULL);
-- nothing was written
SELECT cmap_count(), cmap_load('existing'), cmap_version() - :v0 AS dv;

--
-- key length: 1024 bytes work, 1025 bytes fail with 54000 (bytes, not
-- characters: E'\xc3\xa9' is the two-byte UTF-8 encoding of e-acute)
--
SELECT q, pg_temp.try(q) AS result FROM (VALUES
  ('SELECT cmap_store(repeat(''k'', 1024), ''v'')'),
  ('SELECT cmap_load(repeat(''k'', 1024))'),
  ('SELECT cmap_swap(repeat(''k'', 1024), ''v2'')'),
  ('SELECT cmap_load_or_store(repeat(''k'', 1024), ''v3'')'),
  ('SELECT cmap_compare_and_swap(repeat(''k'', 1024), ''v2'', ''v4'')'),
  ('SELECT cmap_compare_and_delete(repeat(''k'', 1024), ''v4'')'),
  ('SELECT cmap_increment(repeat(''k'', 1024))'),
  ('SELECT cmap_delete(repeat(''k'', 1024))'),
  ('SELECT cmap_store(repeat(E''\xc3\xa9'', 512), ''two-byte chars'')'),
  ('SELECT cmap_store(repeat(''k'', 1025), ''v'')'),
  ('SELECT cmap_load(repeat(''k'', 1025))'),
  ('SELECT cmap_delete(repeat(''k'', 1025))'),
  ('SELECT cmap_swap(repeat(''k'', 1025), ''v'')'),
  ('SELECT cmap_load_or_store(repeat(''k'', 1025), ''v'')'),
  ('SELECT cmap_compare_and_swap(repeat(''k'', 1025), ''a'', ''b'')'),
  ('SELECT cmap_compare_and_delete(repeat(''k'', 1025), ''a'')'),
  ('SELECT cmap_increment(repeat(''k'', 1025))'),
  ('SELECT cmap_store(repeat(E''\xc3\xa9'', 512) || ''x'', ''v'')'),
  ('SELECT cmap_store(repeat(''k'', 100000), ''v'')')
) AS calls(q);
SELECT cmap_store(repeat('k', 1025), 'v');
\echo :LAST_ERROR_SQLSTATE
SELECT octet_length(key), value FROM cmap_iterate() ORDER BY 1;
-- a prefix longer than any key is not an error
SELECT count(*) FROM cmap_iterate(repeat('k', 2000));
SELECT cmap_delete(repeat(E'\xc3\xa9', 512));

--
-- increment of a value that is not an integer: 22P02; overflow: 22003;
-- the value is left as it was
--
SELECT cmap_store('word', 'abc'), cmap_store('blank', ''), cmap_store('space', ' '),
       cmap_store('frac', '1.5'), cmap_store('tail', '12abc'), cmap_store('hex', '0x10'),
       cmap_store('exp', '1e3'), cmap_store('plus', '+5'),
       cmap_store('max', '9223372036854775807'),
       cmap_store('min', '-9223372036854775808'),
       cmap_store('huge', '9223372036854775808');
SELECT cmap_version() AS v1 \gset
SELECT k, pg_temp.try(format('SELECT cmap_increment(%L, %s)', k, d)) AS result
FROM (VALUES ('word', 1), ('blank', 1), ('space', 1), ('frac', 1), ('tail', 1),
             ('hex', 1), ('exp', 1), ('max', 1), ('min', -1), ('huge', 0),
             ('huge', -1)) AS t(k, d);
SELECT key, value FROM cmap_iterate() ORDER BY key;
SELECT cmap_version() - :v1 AS dv;                          -- 0
-- increments that stay in range still work on the same keys
SELECT cmap_increment('max', -1), cmap_increment('min', 1), cmap_increment('plus');
-- a statement that fails part-way applies none of its increments
SELECT cmap_increment('counter'), cmap_increment('word');
\echo :LAST_ERROR_SQLSTATE
SELECT cmap_load('counter') IS NULL AS counter_absent;
-- nor does a transaction that continued after a failed increment
BEGIN;
SELECT cmap_store('other', 'o');
SELECT cmap_increment('fresh', 9223372036854775807);
SELECT cmap_increment('fresh', 1);
\echo :LAST_ERROR_SQLSTATE
COMMIT;
SELECT cmap_load('other') IS NULL AS other_absent,
       cmap_load('fresh') IS NULL AS fresh_absent;
SELECT cmap_version() - :v1 AS dv;                          -- 1
SELECT cmap_clear();

--
-- writes in a read-only transaction: 25006; reads work
--
SELECT cmap_store('ro', 'before');
SELECT cmap_version() AS v2 \gset
BEGIN READ ONLY;
SELECT cmap_load('ro'), cmap_count(), cmap_version() - :v2 AS dv;
SELECT count(*) FROM cmap_iterate();
SELECT pinned_snapshots >= 0 AS stats_ok FROM cmap_stats();
SELECT q, pg_temp.try(q) AS result FROM (VALUES
  ('SELECT cmap_store(''ro'', ''x'')'),
  ('SELECT cmap_delete(''ro'')'),
  ('SELECT cmap_swap(''ro'', ''x'')'),
  ('SELECT cmap_load_or_store(''new'', ''x'')'),
  ('SELECT cmap_compare_and_swap(''ro'', ''before'', ''x'')'),
  ('SELECT cmap_compare_and_delete(''ro'', ''before'')'),
  ('SELECT cmap_increment(''n'')'),
  ('SELECT cmap_clear()')
) AS calls(q);
SELECT cmap_store('ro', 'x');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
SET default_transaction_read_only = on;
SELECT cmap_store('ro', 'x');
\echo :LAST_ERROR_SQLSTATE
RESET default_transaction_read_only;
-- also in immediate mode
SET cmapext.transactional = off;
BEGIN READ ONLY;
SELECT cmap_store('ro', 'x');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
RESET cmapext.transactional;
SELECT cmap_load('ro'), cmap_count(), cmap_version() - :v2 AS dv;

--
-- PREPARE TRANSACTION: refused (0A000, nothing applied) after map writes,
-- allowed for a transaction that only read the map
--
SHOW max_prepared_transactions;
BEGIN;
SELECT cmap_store('prep', 'p');
PREPARE TRANSACTION 'regress_cmap_p1';
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS prepared FROM pg_prepared_xacts WHERE gid LIKE 'regress_cmap%';
SELECT cmap_load('prep') IS NULL AS not_applied, cmap_version() - :v2 AS dv;
-- increments and cmap_clear() are writes too
BEGIN;
SELECT cmap_increment('prep_ctr');
PREPARE TRANSACTION 'regress_cmap_p2';
\echo :LAST_ERROR_SQLSTATE
BEGIN;
SELECT cmap_clear();
PREPARE TRANSACTION 'regress_cmap_p3';
\echo :LAST_ERROR_SQLSTATE
SELECT cmap_load('prep_ctr') IS NULL AS not_applied, cmap_count(), cmap_version() - :v2 AS dv;
-- read-only use of the map: PREPARE and COMMIT PREPARED work
BEGIN;
SELECT cmap_load('ro'), cmap_count();
SELECT key FROM cmap_iterate();
PREPARE TRANSACTION 'regress_cmap_p4';
SELECT gid FROM pg_prepared_xacts WHERE gid LIKE 'regress_cmap%';
COMMIT PREPARED 'regress_cmap_p4';
-- and ROLLBACK PREPARED
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT cmap_count();
PREPARE TRANSACTION 'regress_cmap_p5';
ROLLBACK PREPARED 'regress_cmap_p5';
-- writes undone by ROLLBACK TO SAVEPOINT are not pending any more
BEGIN;
SAVEPOINT s;
SELECT cmap_store('prep', 'p');
ROLLBACK TO SAVEPOINT s;
PREPARE TRANSACTION 'regress_cmap_p6';
COMMIT PREPARED 'regress_cmap_p6';
SELECT count(*) AS prepared FROM pg_prepared_xacts WHERE gid LIKE 'regress_cmap%';
SELECT pinned_snapshots FROM cmap_stats();
SELECT cmap_load('prep') IS NULL AS not_applied, cmap_version() - :v2 AS dv;
-- the map is still writable afterwards
SELECT cmap_store('after', 'a');
SELECT cmap_load('after'), cmap_version() - :v2 AS dv;

--
-- one session pins at most 15 distinct versions (53400): 15 open cursors,
-- each declared after an immediate write published a new version; the
-- pins are released when the transaction ends
--
SET cmapext.transactional = off;
BEGIN;
SELECT format('DO $$BEGIN PERFORM cmap_store(''pin'', ''%s''); END$$', i),
       format('DECLARE regress_cmap_c%s CURSOR FOR SELECT key FROM cmap_iterate()', i),
       format('MOVE 1 IN regress_cmap_c%s', i)
FROM generate_series(1, 15) AS i
\gexec
SELECT pinned_snapshots FROM cmap_stats();
DO $$BEGIN PERFORM cmap_store('pin', '16'); END$$;
DECLARE regress_cmap_c16 CURSOR FOR SELECT key FROM cmap_iterate();
MOVE 1 IN regress_cmap_c16;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
RESET cmapext.transactional;
SELECT pinned_snapshots FROM cmap_stats();
SELECT cmap_load('pin');
SELECT cmap_clear();
