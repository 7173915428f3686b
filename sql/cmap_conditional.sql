--
-- cmap_conditional: single-session semantics of the conditional operations
-- (cmap_load_or_store, cmap_compare_and_swap, cmap_compare_and_delete) and
-- of cmap_increment, in transactions and in immediate mode.
--
-- Covers: return values against the transaction's own writes and against
-- its snapshot; absent keys; savepoints; NULL arguments (22004); 22P02 and
-- 22003 at the call and at COMMIT, with nothing applied; the 40001 of a
-- failed commit-time validation, reproduced in one session by letting an
-- immediate-mode write (cmapext.transactional = off) change a key the
-- transaction depends on; immediate mode itself (each applied write is
-- one version, survives ROLLBACK, a failed condition applies nothing);
-- PREPARE TRANSACTION after only a conditional operation (0A000); and
-- parallel plans whose leader calls the PARALLEL RESTRICTED readers.
-- Concurrency is covered by the isolation specs cmap_cond_* / cmap_incr_*.
--
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS cmapext;
CREATE EXTENSION cmapext;
RESET client_min_messages;

-- try(sql): run sql, report 'ok' or its SQLSTATE and message
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  st text; msg text;
BEGIN
  EXECUTE q;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
  RETURN st || ': ' || msg;
END $$;

SELECT cmap_store('a', 'A'), cmap_store('n', '5'), cmap_store('word', 'abc'),
       cmap_store('max', '9223372036854775807');
SELECT cmap_version() AS v0 \gset
-- the map as key=value@(entry version - v0), @own for uncommitted writes
CREATE FUNCTION pg_temp.state(v0 bigint) RETURNS text LANGUAGE sql AS $$
  SELECT string_agg(key || '=' || value || '@' ||
                    coalesce((version - v0)::text, 'own'), ' ' ORDER BY key)
  FROM cmap_iterate()
$$;
SELECT pg_temp.state(:v0);

--
-- load_or_store in a transaction
--
BEGIN;
SELECT cmap_load_or_store('new', 'n1');             -- absent: stores n1
SELECT cmap_load_or_store('new', 'n2');             -- own value: n1
SELECT cmap_load_or_store('a', 'ignored');          -- snapshot value: A
SELECT cmap_load('new'), cmap_count();              -- n1, 5
SELECT pg_temp.state(:v0);                          -- new=n1@own
COMMIT;
SELECT pg_temp.state(:v0), cmap_version() - :v0 AS dv;   -- new@1, dv 1
-- a transaction whose load_or_store only loaded publishes no version
BEGIN;
SELECT cmap_load_or_store('a', 'x'), cmap_load_or_store('new', 'x');
COMMIT;
SELECT cmap_version() - :v0 AS dv;                   -- 1
-- rolled back: nothing
BEGIN;
SELECT cmap_load_or_store('gone', 'g');
ROLLBACK;
SELECT cmap_load('gone') IS NULL AS absent, cmap_version() - :v0 AS dv;
-- after an own delete the key is absent in the view: load_or_store stores;
-- after an own store it returns the stored value
BEGIN;
SELECT cmap_delete('new');
SELECT cmap_load_or_store('new', 'n3');              -- n3
SELECT cmap_store('a', 'A2');
SELECT cmap_load_or_store('a', 'x');                 -- A2
COMMIT;
SELECT pg_temp.state(:v0), cmap_version() - :v0 AS dv;   -- a=A2@2 new=n3@2

--
-- compare_and_swap in a transaction
--
BEGIN;
SELECT cmap_compare_and_swap('a', 'A2', 'B');        -- t (snapshot)
SELECT cmap_compare_and_swap('a', 'A2', 'C');        -- f (own value is B now)
SELECT cmap_compare_and_swap('a', 'B', 'C');         -- t (own value)
SELECT cmap_load('a');                               -- C
SELECT cmap_compare_and_swap('absent', '', 'x');     -- f: absent is not ''
SELECT cmap_compare_and_swap('absent', 'x', 'y');    -- f
SELECT cmap_load('absent') IS NULL AS still_absent;
SELECT cmap_compare_and_swap('a', 'c', 'D');         -- f: exact, case-sensitive
SELECT cmap_store('own', '1');
SELECT cmap_compare_and_swap('own', '1', '2');       -- t on an own write
SELECT cmap_delete('own');
SELECT cmap_compare_and_swap('own', '2', '3');       -- f: deleted in the view
COMMIT;
SELECT pg_temp.state(:v0), cmap_version() - :v0 AS dv;   -- a=C@3, no own
-- only failing CAS: nothing written, no version
BEGIN;
SELECT cmap_compare_and_swap('a', 'zzz', 'x'), cmap_compare_and_swap('nokey', 'a', 'b');
COMMIT;
SELECT cmap_load('a'), cmap_load('nokey') IS NULL AS absent, cmap_version() - :v0 AS dv;
-- CAS to the same value is a write (a new entry version)
BEGIN;
SELECT cmap_compare_and_swap('a', 'C', 'C');
COMMIT;
SELECT pg_temp.state(:v0), cmap_version() - :v0 AS dv;   -- a=C@4

--
-- compare_and_delete in a transaction
--
BEGIN;
SELECT cmap_compare_and_delete('a', 'x');            -- f
SELECT cmap_compare_and_delete('a', 'C');            -- t
SELECT cmap_compare_and_delete('a', 'C');            -- f: gone in the view
SELECT cmap_load('a') IS NULL AS gone, cmap_count();
SELECT cmap_load_or_store('a', 'again');             -- stores again
SELECT cmap_compare_and_delete('absent', '');        -- f
SELECT cmap_store('tmp', 't');
SELECT cmap_compare_and_delete('tmp', 't');          -- t on an own write
SELECT cmap_load('tmp') IS NULL AS tmp_gone;
COMMIT;
SELECT pg_temp.state(:v0), cmap_version() - :v0 AS dv;   -- a=again@5, no tmp

--
-- increment in a transaction: the value in the transaction's view
--
BEGIN;
SELECT cmap_increment('ctr');                        -- absent: 1
SELECT cmap_increment('ctr');                        -- 2 (default delta 1)
SELECT cmap_increment('ctr', 10);                    -- 12
SELECT cmap_increment('ctr', -20);                   -- -8
SELECT cmap_load('ctr'), cmap_count();               -- -8, one more key
SELECT key, value, version FROM cmap_iterate('ctr'); -- own: version NULL
SELECT cmap_increment('n', 0);                       -- 5, but a write
SELECT cmap_increment('n', -7);                      -- -2
COMMIT;
SELECT pg_temp.state(:v0), cmap_version() - :v0 AS dv;   -- ctr=-8@6 n=-2@6
-- on top of an own store, and after an own delete (absent counts as 0)
BEGIN;
SELECT cmap_store('ctr', '100');
SELECT cmap_increment('ctr', 5);                     -- 105
SELECT cmap_delete('n');
SELECT cmap_increment('n', 3);                       -- 3
COMMIT;
SELECT cmap_load('ctr'), cmap_load('n'), cmap_version() - :v0 AS dv;   -- 105, 3, 7
-- rolled back: nothing
BEGIN;
SELECT cmap_increment('ctr', 1000);
ROLLBACK;
SELECT cmap_load('ctr'), cmap_version() - :v0 AS dv;
-- non-integer value: 22P02 at the call, nothing of the transaction applied
BEGIN;
SELECT cmap_store('side', 's');
SELECT cmap_increment('word');
\echo :SQLSTATE
COMMIT;
SELECT cmap_load('side') IS NULL AS side_absent, cmap_load('word'), cmap_version() - :v0 AS dv;
-- an own non-integer value counts too, as do values around a valid number
BEGIN;
SELECT cmap_increment('own_word');
SELECT cmap_store('own_word', '1.5');
SELECT pg_temp.try('SELECT cmap_increment(''own_word'')') AS result;
SELECT pg_temp.try(format('SELECT cmap_store(''w'', %L), cmap_increment(''w'')', v)) AS result, v
FROM unnest(ARRAY['', ' ', '1e3', '0x10', '12abc', '99999999999999999999']) v;
ROLLBACK;
-- overflow: 22003 at the call, nothing applied
BEGIN;
SELECT cmap_store('side', 's');
SELECT cmap_increment('max');
\echo :SQLSTATE
ROLLBACK;
BEGIN;
SELECT cmap_increment('acc', 9223372036854775807);
SELECT cmap_increment('acc', 1);                     -- own sum overflows
\echo :SQLSTATE
ROLLBACK;
BEGIN;
SELECT cmap_increment('acc', -9223372036854775807);
SELECT cmap_increment('acc', -1);                    -- exactly the minimum
SELECT cmap_increment('acc', -1);                    -- below it
\echo :SQLSTATE
ROLLBACK;
SELECT cmap_load('side') IS NULL AS side_absent, cmap_load('acc') IS NULL AS acc_absent,
       cmap_load('max'), cmap_version() - :v0 AS dv;
-- a failed increment inside a savepoint leaves the rest of the transaction
BEGIN;
SELECT cmap_increment('ctr');                        -- 106
SAVEPOINT s;
SELECT cmap_increment('ctr', 9223372036854775807);
ROLLBACK TO SAVEPOINT s;
SELECT cmap_increment('ctr');                        -- 107
COMMIT;
SELECT cmap_load('ctr'), cmap_version() - :v0 AS dv;   -- 107, 8

--
-- large values (stored out of line) compare byte for byte
--
SELECT cmap_store('bigv', repeat('x', 100000));
BEGIN;
SELECT cmap_compare_and_swap('bigv', repeat('x', 99999) || 'y', 'no');   -- f
SELECT cmap_compare_and_swap('bigv', repeat('x', 99999), 'no');          -- f
SELECT cmap_compare_and_swap('bigv', repeat('x', 100000), repeat('z', 50000));  -- t
SELECT length(cmap_load_or_store('bigv', 'q')) AS len, left(cmap_load('bigv'), 3);
COMMIT;
SELECT cmap_compare_and_delete('bigv', repeat('z', 49999) || 'y') AS cad;  -- f
SELECT cmap_compare_and_delete('bigv', repeat('z', 50000)) AS cad;         -- t
SELECT cmap_load('bigv') IS NULL AS gone;
SELECT cmap_version() - :v0 AS dv;                   -- 11

--
-- savepoints and exception blocks undo conditional writes
--
BEGIN;
SELECT cmap_load_or_store('sp', 'outer');
SAVEPOINT s1;
SELECT cmap_compare_and_swap('sp', 'outer', 'inner');   -- t
SELECT cmap_compare_and_delete('ctr', '107');           -- t
SELECT cmap_increment('cnt_sp');
ROLLBACK TO SAVEPOINT s1;
SELECT cmap_load('sp'), cmap_load('ctr'), cmap_load('cnt_sp') IS NULL AS cnt_absent;
DO $$
BEGIN
  PERFORM cmap_compare_and_swap('sp', 'outer', 'exc');
  PERFORM cmap_increment('ctr');
  RAISE EXCEPTION 'undo';
EXCEPTION WHEN raise_exception THEN
  NULL;
END $$;
SELECT cmap_load('sp'), cmap_load('ctr');
COMMIT;
SELECT cmap_load('sp'), cmap_load('ctr'), cmap_load('cnt_sp') IS NULL AS cnt_absent,
       cmap_version() - :v0 AS dv;                  -- outer, 107, t, 12

--
-- NULL arguments: 22004 for every argument, in both modes, nothing applied
--
SELECT cmap_version() AS v1 \gset
SELECT m AS transactional, q, pg_temp.try(format('SET LOCAL cmapext.transactional = %s; %s', m, q)) AS result
FROM unnest(ARRAY['on', 'off']) m, unnest(ARRAY[
  'SELECT cmap_load_or_store(NULL, ''v'')',
  'SELECT cmap_load_or_store(''nk'', NULL)',
  'SELECT cmap_compare_and_swap(NULL, ''a'', ''b'')',
  'SELECT cmap_compare_and_swap(''sp'', NULL, ''b'')',
  'SELECT cmap_compare_and_swap(''sp'', ''outer'', NULL)',
  'SELECT cmap_compare_and_delete(NULL, ''outer'')',
  'SELECT cmap_compare_and_delete(''sp'', NULL)',
  'SELECT cmap_increment(NULL)',
  'SELECT cmap_increment(''nk'', NULL)'
]) WITH ORDINALITY q(q, i)
ORDER BY m DESC, i;
SHOW cmapext.transactional;
SELECT cmap_load('nk') IS NULL AS absent, cmap_load('sp'), cmap_version() - :v1 AS dv;

--
-- Commit-time validation: 40001, with nothing of the transaction applied.
-- An immediate-mode write plays the concurrent transaction: it is
-- published at once, after the transaction's decision.
--
\set VERBOSITY default
BEGIN;
SELECT cmap_compare_and_swap('sp', 'outer', 'mine');    -- t
SELECT cmap_store('side', 's');
SET LOCAL cmapext.transactional = off;
SELECT cmap_store('sp', 'other');                        -- published now
SET LOCAL cmapext.transactional = on;
COMMIT;
\echo :SQLSTATE
\set VERBOSITY terse
SELECT cmap_load('sp'), cmap_load('side') IS NULL AS side_absent,
       cmap_version() - :v1 AS dv;                       -- other, t, 1
-- load_or_store on an absent key, the key then created: 40001
BEGIN;
SELECT cmap_load_or_store('race', 'mine');
SET LOCAL cmapext.transactional = off;
SELECT cmap_store('race', 'other');
SET LOCAL cmapext.transactional = on;
COMMIT;
\echo :SQLSTATE
-- compare_and_delete, the key rewritten with the same value: 40001
BEGIN;
SELECT cmap_compare_and_delete('race', 'other');
SET LOCAL cmapext.transactional = off;
SELECT cmap_store('race', 'other');
SET LOCAL cmapext.transactional = on;
COMMIT;
\echo :SQLSTATE
-- a CAS that returned false is a read, validated too
BEGIN;
SELECT cmap_compare_and_swap('race', 'nope', 'x');
SELECT cmap_store('side', 's');
SET LOCAL cmapext.transactional = off;
SELECT cmap_store('race', 'changed');
SET LOCAL cmapext.transactional = on;
COMMIT;
\echo :SQLSTATE
SELECT cmap_load('race'), cmap_load('side') IS NULL AS side_absent,
       cmap_version() - :v1 AS dv;                       -- changed, t, 4
-- a change to another key does not matter
BEGIN;
SELECT cmap_compare_and_swap('race', 'changed', 'mine');
SET LOCAL cmapext.transactional = off;
SELECT cmap_store('unrelated', 'u');
SET LOCAL cmapext.transactional = on;
COMMIT;
\echo :SQLSTATE
SELECT cmap_load('race'), cmap_version() - :v1 AS dv;    -- mine, 6
-- increments are validated at commit against the value then: 22P02, 22003
BEGIN;
SELECT cmap_increment('ctr');                            -- 108
SELECT cmap_store('side', 's');
SET LOCAL cmapext.transactional = off;
SELECT cmap_store('ctr', 'not a number');
SET LOCAL cmapext.transactional = on;
COMMIT;
\echo :SQLSTATE
BEGIN;
SELECT cmap_increment('big', 9223372036854775000);
SELECT cmap_store('side', 's');
SET LOCAL cmapext.transactional = off;
SELECT cmap_increment('big', 1000);                      -- 1000, published
SET LOCAL cmapext.transactional = on;
COMMIT;
\echo :SQLSTATE
SELECT cmap_load('ctr'), cmap_load('big'), cmap_load('side') IS NULL AS side_absent,
       cmap_version() - :v1 AS dv;                       -- not a number, 1000, t, 8
-- and they never lose the other write: 1000 + 5
BEGIN;
SELECT cmap_increment('big', 5);                         -- 1005 in the view
SET LOCAL cmapext.transactional = off;
SELECT cmap_increment('big', 1000);                      -- 2000, published
SET LOCAL cmapext.transactional = on;
SELECT cmap_increment('big', 0);                         -- 2005: new statement
COMMIT;
SELECT cmap_load('big'), cmap_version() - :v1 AS dv;      -- 2005, 10

--
-- Immediate mode: each applied write is published at once as its own
-- version, ROLLBACK does not undo it, a failed condition writes nothing
--
SET cmapext.transactional = off;
SELECT cmap_version() AS v2 \gset
SELECT cmap_load_or_store('im', 'first');                -- stores
SELECT cmap_version() - :v2 AS dv;                       -- 1
SELECT cmap_load_or_store('im', 'second');               -- loads: first
SELECT cmap_version() - :v2 AS dv;                       -- 1
SELECT cmap_compare_and_swap('im', 'nope', 'x');         -- f
SELECT cmap_compare_and_swap('imabsent', 'nope', 'x');   -- f
SELECT cmap_compare_and_delete('im', 'nope');            -- f
SELECT cmap_load('im'), cmap_version() - :v2 AS dv;      -- first, 1
SELECT cmap_compare_and_swap('im', 'first', 'second');   -- t
SELECT cmap_version() - :v2 AS dv;                       -- 2
SELECT cmap_compare_and_delete('im', 'second');          -- t
SELECT cmap_load('im') IS NULL AS gone, cmap_version() - :v2 AS dv;   -- 3
SELECT cmap_increment('imctr');                          -- 1
SELECT cmap_increment('imctr', 41);                      -- 42
SELECT cmap_increment('imctr', -50);                     -- -8
SELECT key, value, version - :v2 AS dv FROM cmap_iterate('im');   -- imctr@6
-- one statement, three increments: three versions
SELECT cmap_increment('imctr'), cmap_increment('imctr'), cmap_increment('imctr');
SELECT cmap_version() - :v2 AS dv;                       -- 9
-- ROLLBACK undoes none of it
BEGIN;
SELECT cmap_load_or_store('imrb', 'kept');
SELECT cmap_compare_and_swap('imrb', 'kept', 'kept2');
SELECT cmap_increment('imrbctr', 7);
SELECT cmap_compare_and_delete('imctr', '-5');
ROLLBACK;
SELECT cmap_load('imrb'), cmap_load('imrbctr'), cmap_load('imctr') IS NULL AS imctr_gone,
       cmap_version() - :v2 AS dv;                       -- kept2, 7, t, 13
-- a savepoint rollback does not undo either
BEGIN;
SAVEPOINT s;
SELECT cmap_increment('imrbctr');
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT cmap_load('imrbctr'), cmap_version() - :v2 AS dv;   -- 8, 14
-- decisions use the latest version, also inside a transaction block
BEGIN;
SELECT cmap_compare_and_swap('imrb', 'kept2', 'k3');     -- t
SELECT cmap_compare_and_swap('imrb', 'kept2', 'k4');     -- f: sees k3
SELECT cmap_load_or_store('imrb', 'x');                  -- k3
COMMIT;
-- errors in immediate mode apply nothing and publish no version
SELECT cmap_version() AS v3 \gset
SELECT cmap_increment('word');
\echo :SQLSTATE
SELECT cmap_increment('max');
\echo :SQLSTATE
SELECT cmap_increment('imrbctr'), cmap_increment('word');   -- first one stays
\echo :SQLSTATE
SELECT cmap_load('word'), cmap_load('max'), cmap_load('imrbctr'),
       cmap_version() - :v3 AS dv;                       -- abc, max, 9, 1
RESET cmapext.transactional;
SHOW cmapext.transactional;

--
-- PREPARE TRANSACTION after only a conditional operation: 0A000, nothing
-- applied, also when the operation wrote nothing (a pure read to validate)
--
SELECT cmap_version() AS v4 \gset
BEGIN;
SELECT cmap_compare_and_swap('imrb', 'nope', 'x');       -- f
PREPARE TRANSACTION 'regress_cmap_cond_1';
\echo :SQLSTATE
BEGIN;
SELECT cmap_load_or_store('imrb', 'x');                  -- loads only
PREPARE TRANSACTION 'regress_cmap_cond_2';
\echo :SQLSTATE
BEGIN;
SELECT cmap_load_or_store('prep', 'p');
PREPARE TRANSACTION 'regress_cmap_cond_3';
\echo :SQLSTATE
BEGIN;
SELECT cmap_compare_and_swap('imrb', 'k3', 'p');
PREPARE TRANSACTION 'regress_cmap_cond_4';
\echo :SQLSTATE
BEGIN;
SELECT cmap_compare_and_delete('imrb', 'k3');
PREPARE TRANSACTION 'regress_cmap_cond_5';
\echo :SQLSTATE
BEGIN;
SELECT cmap_increment('prepctr');
PREPARE TRANSACTION 'regress_cmap_cond_6';
\echo :SQLSTATE
SELECT count(*) AS prepared FROM pg_prepared_xacts WHERE gid LIKE 'regress_cmap_cond%';
SELECT cmap_load('imrb'), cmap_load('prep') IS NULL AS prep_absent,
       cmap_load('prepctr') IS NULL AS prepctr_absent,
       cmap_version() - :v4 AS dv;                       -- k3, t, t, 0

--
-- Parallel plans: the readers are PARALLEL RESTRICTED, so they run in the
-- leader, above the Gather, and the answers are right
--
CREATE TABLE cmap_par AS
  SELECT g AS id, g % 10 AS grp FROM generate_series(1, 20000) g;
ANALYZE cmap_par;
SELECT cmap_store('g:' || i, 'v' || i) FROM generate_series(0, 4) i;
SELECT cmap_count() AS entries \gset
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SET parallel_leader_participation = on;
-- cmap_count in the target list of an aggregate over a parallel scan:
-- computed by the Aggregate in the leader
EXPLAIN (COSTS OFF, VERBOSE)
SELECT count(*) AS n, cmap_count() AS entries FROM cmap_par;
SELECT count(*) AS n, cmap_count() = :entries AS entries_ok FROM cmap_par;
-- cmap_load per row, projected by the Gather in the leader
EXPLAIN (COSTS OFF, VERBOSE)
SELECT id, cmap_load('g:' || grp) AS v FROM cmap_par WHERE id % 1000 = 3;
SELECT id, cmap_load('g:' || grp) AS v FROM cmap_par WHERE id % 1000 = 3 ORDER BY id;
-- cmap_load in a filter above a Gather
EXPLAIN (COSTS OFF)
SELECT grp, n, v FROM (
  SELECT grp, count(*) AS n, cmap_load('g:' || grp) AS v FROM cmap_par GROUP BY grp
) s WHERE v IS NOT NULL ORDER BY grp;
SELECT grp, n, v FROM (
  SELECT grp, count(*) AS n, cmap_load('g:' || grp) AS v FROM cmap_par GROUP BY grp
) s WHERE v IS NOT NULL ORDER BY grp;
-- a restricted function in the scan's own WHERE keeps the scan out of the
-- workers (no Gather), and the answer is right
EXPLAIN (COSTS OFF)
SELECT count(*) FROM cmap_par WHERE cmap_load('g:' || grp) IS NOT NULL;
SELECT count(*) FROM cmap_par WHERE cmap_load('g:' || grp) IS NOT NULL;
-- the same in a transaction with pending writes: the leader sees them
BEGIN;
SELECT cmap_store('g:7', 'v7'), cmap_delete('g:0');
SELECT grp, n, v FROM (
  SELECT grp, count(*) AS n, cmap_load('g:' || grp) AS v FROM cmap_par GROUP BY grp
) s WHERE v IS NOT NULL ORDER BY grp;
ROLLBACK;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;
RESET parallel_leader_participation;
DROP TABLE cmap_par;

--
-- After every error path above, all kinds of commits still go through at
-- once: nothing leaked (conditional-commit lock, commit windows, key
-- protections).  The timeout turns a leak into an error instead of a hang;
-- the commits run inside DO blocks because statement_timeout does not
-- cover the commit of an autocommit statement.
--
SET statement_timeout = '10s';
DO $$ BEGIN PERFORM cmap_compare_and_swap('imrb', 'k3', 'k4'); COMMIT; END $$;
DO $$ BEGIN PERFORM cmap_increment('ctr_final'); COMMIT; END $$;
DO $$ BEGIN PERFORM cmap_store('bulk' || i, 'x') FROM generate_series(1, 100) i; COMMIT; END $$;
DO $$
BEGIN
  PERFORM cmap_compare_and_swap('imrb', 'k4', 'k5');
  PERFORM cmap_store('bulk' || i, 'y') FROM generate_series(1, 100) i;
  COMMIT;
END $$;
RESET statement_timeout;
SELECT cmap_load('imrb'), cmap_load('ctr_final'),
       (SELECT count(*) FROM cmap_iterate('bulk') WHERE value = 'y') AS bulk;

-- leave the database clean for the suites that follow
SELECT cmap_clear() > 0 AS cleared;
