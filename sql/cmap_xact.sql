--
-- cmap_xact: transaction semantics seen from one session.
--
-- ROLLBACK discards; a transaction reads its own writes (load, iterate,
-- count, delete, swap and the conditional operations); ROLLBACK TO
-- SAVEPOINT undoes exactly the writes made after the savepoint (also a
-- cmap_clear()), RELEASE keeps them, nested savepoints; PL/pgSQL exception
-- blocks; a failing statement loses all its writes; one version per
-- committing transaction; the last of many writes of a key wins;
-- increments return the running value; a differential check of random
-- operations against a shadow table; immediate mode
-- (cmapext.transactional = off), including an immediate write that fails
-- inside an exception block (it must leave no commit window behind: the
-- last test guards the following commits with statement_timeout).
--
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS cmapext;
CREATE EXTENSION cmapext;
RESET client_min_messages;

-- the map as this session sees it, in one line
CREATE FUNCTION pg_temp.seen() RETURNS text LANGUAGE sql AS $$
  SELECT coalesce(string_agg(key || '=' || value, ' ' ORDER BY key COLLATE "C"), '(empty)')
  FROM cmap_iterate()
$$;

SHOW cmapext.transactional;
SELECT cmap_store('base1', 'b1'), cmap_store('base2', 'b2');
SELECT cmap_version() AS v0 \gset

--
-- ROLLBACK discards every kind of write
--
BEGIN;
SELECT cmap_store('new', 'n'), cmap_store('base1', 'changed'), cmap_delete('base2');
SELECT cmap_increment('ctr'), cmap_swap('sw', 's'), cmap_load_or_store('los', 'l');
SELECT pg_temp.seen();
ROLLBACK;
SELECT pg_temp.seen(), cmap_version() - :v0 AS dv;
BEGIN;
SELECT cmap_clear();
SELECT pg_temp.seen();
ROLLBACK;
SELECT pg_temp.seen(), cmap_version() - :v0 AS dv;

--
-- read-your-writes
--
BEGIN;
SELECT cmap_store('k1', 'v1');
SELECT cmap_load('k1'), cmap_count();
SELECT key, value, version IS NULL AS own FROM cmap_iterate();
SELECT cmap_swap('k1', 'v2');                 -- previous value is our own
SELECT cmap_load_or_store('k1', 'ignored');   -- our own value is loaded
SELECT cmap_compare_and_swap('k1', 'v2', 'v3');
SELECT cmap_compare_and_swap('k1', 'v2', 'v4');
SELECT cmap_load('k1');
SELECT cmap_delete('k1');                     -- existed in our view
SELECT cmap_delete('k1');                     -- not any more
SELECT cmap_load('k1') IS NULL AS gone, cmap_count();
SELECT cmap_delete('base1');                  -- committed key, deleted by us
SELECT cmap_load('base1') IS NULL AS gone, cmap_count();
SELECT cmap_swap('base1', 'back') IS NULL AS was_deleted;
SELECT cmap_compare_and_delete('base1', 'back');
SELECT cmap_load_or_store('base1', 'again');
SELECT pg_temp.seen(), cmap_count();
SELECT cmap_version() - :v0 AS dv;            -- nothing published yet
COMMIT;
SELECT pg_temp.seen(), cmap_version() - :v0 AS dv;

-- a scan sees the writes made before it started, not those made while it
-- runs (the SRF in the select list streams, one store per row)
BEGIN;
SELECT cmap_store('base1+', 'pending');
SELECT count(cmap_store(k || '+', 'v')) FROM (SELECT (cmap_iterate()).key AS k) s;
SELECT pg_temp.seen();
SELECT count(*) FILTER (WHERE cmap_delete(k)) FROM (SELECT (cmap_iterate()).key AS k) s;
SELECT cmap_count(), pg_temp.seen();
ROLLBACK;

--
-- savepoints
--
SELECT cmap_version() AS v1 \gset
BEGIN;
SELECT cmap_store('s0', 'top');
SAVEPOINT a;
SELECT cmap_store('s1', 'in a'), cmap_store('s0', 'changed in a'), cmap_delete('base2');
SELECT pg_temp.seen();
ROLLBACK TO SAVEPOINT a;
SELECT pg_temp.seen();                        -- back to the state at a
-- the savepoint still exists after ROLLBACK TO: use it again
SELECT cmap_store('s2', 'in a, second time');
ROLLBACK TO SAVEPOINT a;
SELECT pg_temp.seen();
-- RELEASE keeps the writes
SAVEPOINT b;
SELECT cmap_store('s3', 'in b'), cmap_delete('base1');
RELEASE SAVEPOINT b;
SELECT pg_temp.seen();
-- nested: rolling back the outer savepoint undoes the released inner one
SAVEPOINT outer_sp;
SELECT cmap_store('n1', 'outer');
SAVEPOINT inner_sp;
SELECT cmap_store('n2', 'inner'), cmap_store('n1', 'changed by inner');
RELEASE SAVEPOINT inner_sp;
SELECT pg_temp.seen();
SAVEPOINT inner2;
SELECT cmap_store('n3', 'inner2');
ROLLBACK TO SAVEPOINT inner2;
SELECT pg_temp.seen();                        -- n3 gone, n1/n2 kept
ROLLBACK TO SAVEPOINT outer_sp;
SELECT pg_temp.seen();                        -- n1, n2 gone
SELECT cmap_version() - :v1 AS dv;
COMMIT;
SELECT pg_temp.seen(), cmap_version() - :v1 AS dv;
SELECT key, version - :v1 AS dv FROM cmap_iterate();

-- cmap_clear() inside a savepoint
SELECT cmap_version() AS v2 \gset
BEGIN;
SELECT cmap_store('p1', 'pending');
SAVEPOINT c;
SELECT cmap_clear();                          -- committed keys + p1
SELECT cmap_store('after_clear', 'x');
SELECT pg_temp.seen(), cmap_count();
ROLLBACK TO SAVEPOINT c;
SELECT pg_temp.seen(), cmap_count();          -- everything back, p1 pending
SELECT cmap_load('p1'), cmap_load('after_clear') IS NULL AS undone;
-- a clear in a released savepoint stays, and later writes survive it
SAVEPOINT d;
SELECT cmap_clear();
RELEASE SAVEPOINT d;
SAVEPOINT e;
SELECT cmap_store('after_release', 'y');
SAVEPOINT f;
SELECT cmap_clear();
ROLLBACK TO SAVEPOINT f;
SELECT pg_temp.seen(), cmap_count();
COMMIT;
SELECT pg_temp.seen(), cmap_count(), cmap_version() - :v2 AS dv;

-- increments and conditional operations are undone by ROLLBACK TO too
BEGIN;
SELECT cmap_increment('cnt', 5);
SAVEPOINT g;
SELECT cmap_increment('cnt', 10);
SELECT cmap_compare_and_swap('after_release', 'y', 'z');
SELECT cmap_load_or_store('los', 'from g');
ROLLBACK TO SAVEPOINT g;
SELECT cmap_load('cnt'), cmap_load('after_release'), cmap_load('los') IS NULL AS no_los;
SELECT cmap_increment('cnt');
COMMIT;
SELECT pg_temp.seen();

--
-- PL/pgSQL exception blocks roll back their writes
--
SELECT cmap_clear();
SELECT cmap_store('keep', 'k');
DO $$
BEGIN
  PERFORM cmap_store('outer', 'kept');
  BEGIN
    PERFORM cmap_store('inner', 'lost');
    PERFORM cmap_store('keep', 'overwritten');
    PERFORM cmap_delete('outer');
    PERFORM cmap_clear();
    RAISE EXCEPTION 'boom';
  EXCEPTION WHEN raise_exception THEN
    RAISE NOTICE 'caught, seen: %', pg_temp.seen();
  END;
  -- a failing write inside a block: only that block's writes vanish
  BEGIN
    PERFORM cmap_store('inner2', 'lost');
    PERFORM cmap_store(NULL, 'x');
  EXCEPTION WHEN null_value_not_allowed THEN
    RAISE NOTICE 'caught 22004, seen: %', pg_temp.seen();
  END;
  BEGIN
    PERFORM cmap_store('inner3', 'kept');
  EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'not reached';
  END;
END $$;
SELECT pg_temp.seen();

--
-- a statement that fails after writing loses all of its writes, also
-- inside a transaction that goes on (psql savepoint per statement)
--
SELECT cmap_store('f' || i, 'x'), 1 / (3 - i) FROM generate_series(1, 5) AS i;
SELECT count(*) AS f_keys FROM cmap_iterate('f');
\set ON_ERROR_ROLLBACK on
BEGIN;
SELECT cmap_store('before', 'b');
SELECT cmap_store('f' || i, 'x'), 1 / (3 - i) FROM generate_series(1, 5) AS i;
SELECT cmap_store('after', 'a');
COMMIT;
\set ON_ERROR_ROLLBACK off
SELECT pg_temp.seen();

--
-- one version per committing transaction, however many keys it writes
--
SELECT cmap_version() AS v3 \gset
BEGIN;
SELECT count(cmap_store('multi' || i, i::text)) FROM generate_series(1, 10) AS i;
SELECT count(cmap_store('bulk' || i, i::text)) FROM generate_series(1, 500) AS i;
SELECT cmap_delete('keep'), cmap_increment('cnt');
COMMIT;
SELECT cmap_version() - :v3 AS dv;
SELECT count(*), min(version - :v3), max(version - :v3)
FROM cmap_iterate() WHERE key ~ '^(multi|bulk)' OR key = 'cnt';
SELECT count(cmap_store('auto' || i, 'x')) FROM generate_series(1, 100) AS i;
SELECT cmap_version() - :v3 AS dv;            -- an autocommit statement is one transaction
-- a read-only transaction publishes nothing
BEGIN;
SELECT count(*) FROM cmap_iterate();
SELECT cmap_load('cnt');
COMMIT;
SELECT cmap_version() - :v3 AS dv;

--
-- the same key written many times publishes its last value
--
SELECT cmap_clear();
SELECT cmap_version() AS v4 \gset
BEGIN;
SELECT count(cmap_store('same', i::text)) FROM generate_series(1, 1000) AS i;
SELECT cmap_load('same');
COMMIT;
SELECT key, value, version - :v4 AS dv FROM cmap_iterate();
BEGIN;
SELECT cmap_store('flip', '1'), cmap_delete('flip'), cmap_store('flip', '2'),
       cmap_delete('flip'), cmap_delete('same'), cmap_store('same', 'last');
COMMIT;
SELECT pg_temp.seen(), cmap_version() - :v4 AS dv;

--
-- increments return the running value in the transaction's view
--
BEGIN;
SELECT cmap_increment('run');
SELECT cmap_increment('run');
SELECT cmap_increment('run', 10);
SELECT cmap_increment('run', -20);
SELECT cmap_load('run'), cmap_count();
SELECT key, value, version IS NULL AS own FROM cmap_iterate('run');
SELECT cmap_store('run', '100');
SELECT cmap_increment('run');
SELECT cmap_delete('run');
SELECT cmap_increment('run', 7);
COMMIT;
SELECT cmap_load('run');
BEGIN;
SELECT cmap_increment('run', 3), cmap_increment('run', 3);
SELECT cmap_increment('other_counter', 1);
COMMIT;
SELECT cmap_load('run'), cmap_load('other_counter');

--
-- immediate mode: each write is its own version and survives ROLLBACK
--
SELECT cmap_clear();
SELECT cmap_version() AS v5 \gset
SET cmapext.transactional = off;
SHOW cmapext.transactional;
BEGIN;
SELECT cmap_store('im1', 'a');
SELECT cmap_version() - :v5 AS dv;            -- already published
SELECT cmap_store('im2', 'b');
SELECT cmap_increment('imc', 5);
SELECT cmap_swap('im1', 'a2');
SELECT cmap_load_or_store('im3', 'c'), cmap_load_or_store('im3', 'ignored');
SELECT cmap_compare_and_swap('im2', 'b', 'b2'), cmap_compare_and_swap('im2', 'b', 'b3');
SELECT cmap_compare_and_delete('im3', 'c'), cmap_compare_and_delete('im3', 'c');
SELECT cmap_delete('im2'), cmap_delete('im2');
SELECT cmap_version() - :v5 AS dv;
ROLLBACK;
SELECT key, value, version - :v5 AS dv FROM cmap_iterate();
SELECT cmap_version() - :v5 AS dv;
-- clear: one version, returns the count; clearing an empty map publishes nothing
SELECT cmap_clear();
SELECT cmap_clear();
SELECT cmap_version() - :v5 AS dv;
-- an immediate write in a failing statement stays, like nextval()
SELECT cmap_store('survivor', 's'), 1 / (random() * 0)::int;
SELECT cmap_load('survivor'), cmap_version() - :v5 AS dv;
-- back on: transactional again
SET cmapext.transactional = on;
BEGIN;
SELECT cmap_store('tx', 't');
ROLLBACK;
SELECT cmap_load('tx') IS NULL AS rolled_back, cmap_version() - :v5 AS dv;
-- SET LOCAL: immediate writes and pending transactional writes side by side
BEGIN;
SELECT cmap_store('pending', 'p');
SET LOCAL cmapext.transactional = off;
SELECT cmap_store('immediate', 'i');
ROLLBACK;
SHOW cmapext.transactional;
SELECT pg_temp.seen(), cmap_version() - :v5 AS dv;

-- an immediate write is a new version: a REPEATABLE READ transaction keeps
-- reading its own snapshot, the next transaction sees the write
SET cmapext.transactional = off;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT cmap_count();
SELECT cmap_store('rr', 'x');
SELECT cmap_load('rr') IS NULL AS not_in_snapshot, cmap_count();
COMMIT;
SELECT cmap_load('rr'), cmap_version() - :v5 AS dv;
RESET cmapext.transactional;

--
-- differential check: a few thousand random operations, with savepoints,
-- against a shadow table, in transactions that commit or roll back; the
-- return value of every call and the whole view are compared
--
SELECT cmap_clear();
CREATE TEMP TABLE shadow (k text PRIMARY KEY, v text);
CREATE FUNCTION pg_temp.fuzz(nops int) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
  kk text; vv text; k2 text; r text; b boolean; n bigint; expected text;
  errors int := 0;
BEGIN
  FOR i IN 1 .. nops LOOP
    kk := 'k' || floor(random() * 20)::int;
    vv := CASE WHEN random() < 0.3 THEN floor(random() * 5)::int::text
               ELSE 'v' || floor(random() * 5)::int END;
    SELECT s.v INTO expected FROM shadow s WHERE s.k = kk;
    CASE floor(random() * 10)::int
      WHEN 0 THEN
        PERFORM cmap_store(kk, vv);
        INSERT INTO shadow VALUES (kk, vv) ON CONFLICT (k) DO UPDATE SET v = excluded.v;
      WHEN 1 THEN
        b := cmap_delete(kk);
        IF b <> (expected IS NOT NULL) THEN errors := errors + 1; END IF;
        DELETE FROM shadow s WHERE s.k = kk;
      WHEN 2 THEN
        r := cmap_swap(kk, vv);
        IF r IS DISTINCT FROM expected THEN errors := errors + 1; END IF;
        INSERT INTO shadow VALUES (kk, vv) ON CONFLICT (k) DO UPDATE SET v = excluded.v;
      WHEN 3 THEN
        r := cmap_load_or_store(kk, vv);
        IF r IS DISTINCT FROM coalesce(expected, vv) THEN errors := errors + 1; END IF;
        INSERT INTO shadow VALUES (kk, vv) ON CONFLICT (k) DO NOTHING;
      WHEN 4 THEN
        b := cmap_compare_and_swap(kk, vv, vv || 'x');
        IF b <> (expected IS NOT DISTINCT FROM vv) THEN errors := errors + 1; END IF;
        IF b THEN UPDATE shadow s SET v = s.v || 'x' WHERE s.k = kk; END IF;
      WHEN 5 THEN
        b := cmap_compare_and_delete(kk, vv);
        IF b <> (expected IS NOT DISTINCT FROM vv) THEN errors := errors + 1; END IF;
        IF b THEN DELETE FROM shadow s WHERE s.k = kk; END IF;
      WHEN 6 THEN
        IF expected IS NULL OR expected ~ '^[0-9]+$' THEN
          n := cmap_increment(kk, 2);
          IF n <> coalesce(expected::bigint, 0) + 2 THEN errors := errors + 1; END IF;
          INSERT INTO shadow VALUES (kk, n::text) ON CONFLICT (k) DO UPDATE SET v = excluded.v;
        END IF;
      WHEN 7 THEN
        IF random() < 0.1 THEN
          n := cmap_clear();
          IF n <> (SELECT count(*) FROM shadow) THEN errors := errors + 1; END IF;
          DELETE FROM shadow;
        END IF;
      WHEN 8 THEN
        -- a subtransaction: its map and shadow writes go or stay together
        BEGIN
          PERFORM cmap_store(kk, 'sub');
          INSERT INTO shadow VALUES (kk, 'sub') ON CONFLICT (k) DO UPDATE SET v = excluded.v;
          k2 := 'k' || floor(random() * 20)::int;
          PERFORM cmap_delete(k2);
          DELETE FROM shadow s WHERE s.k = k2;
          IF random() < 0.5 THEN RAISE EXCEPTION 'undo'; END IF;
        EXCEPTION WHEN raise_exception THEN NULL;
        END;
      ELSE
        IF cmap_count() <> (SELECT count(*) FROM shadow) OR
           (SELECT string_agg(s.k || '=' || s.v, ',' ORDER BY s.k COLLATE "C") FROM shadow s)
           IS DISTINCT FROM (SELECT string_agg(c.key || '=' || c.value, ',') FROM cmap_iterate() c) THEN
          errors := errors + 1;
        END IF;
    END CASE;
  END LOOP;
  RETURN errors;
END $$;
SELECT setseed(0.42);
DO $$
DECLARE
  errs int := 0;
  mismatches int := 0;
BEGIN
  FOR t IN 1 .. 12 LOOP
    errs := errs + pg_temp.fuzz(300);
    IF t % 3 = 0 THEN ROLLBACK; ELSE COMMIT; END IF;
    IF cmap_count() <> (SELECT count(*) FROM shadow) OR
       (SELECT string_agg(k || '=' || v, ',' ORDER BY k COLLATE "C") FROM shadow)
       IS DISTINCT FROM (SELECT string_agg(key || '=' || value, ',') FROM cmap_iterate()) THEN
      mismatches := mismatches + 1;
    END IF;
  END LOOP;
  RAISE NOTICE 'wrong results: %, committed state mismatches: %', errs, mismatches;
END $$;
SELECT cmap_count() = (SELECT count(*) FROM shadow) AS same_count;
SELECT cmap_clear() = (SELECT count(*) FROM shadow) AS cleared_all;
DROP TABLE shadow;

-- an immediate write that fails inside an exception block leaves the map
-- fully usable: later commits of every kind (small, conditional, more
-- than 64 keys) neither fail nor wait
SET cmapext.transactional = off;
SELECT cmap_store('word', 'not a number');
DO $$
BEGIN
  PERFORM cmap_increment('word');
EXCEPTION WHEN invalid_text_representation THEN
  RAISE NOTICE 'caught 22P02';
END $$;
SET cmapext.transactional = on;
SET statement_timeout = '10s';
DO $$ BEGIN PERFORM cmap_store('small', 's'); COMMIT; END $$;
DO $$ BEGIN PERFORM cmap_increment('cond'); COMMIT; END $$;
DO $$ BEGIN PERFORM cmap_store('large' || i, 'x') FROM generate_series(1, 100) AS i; COMMIT; END $$;
RESET statement_timeout;
SELECT cmap_load('word'), cmap_load('small'), cmap_load('cond'),
       (SELECT count(*) FROM cmap_iterate('large')) AS large_keys;
SELECT cmap_clear();
