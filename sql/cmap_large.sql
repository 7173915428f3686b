--
-- cmap_large: big values, many keys, and the memory limit.
--
-- Values of several MB and values around the inline threshold (512 bytes)
-- round-trip exactly; 100000 keys in one transaction; maximal keys and
-- inline values; a commit that does not fit in cmapext.max_memory (64MB
-- here) fails with 53200 and applies nothing, after which the map keeps
-- working; memory freed by clearing is reclaimed and can be used again.
--
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS cmapext;
CREATE EXTENSION cmapext;
RESET client_min_messages;

-- wait (at most about 10 s) until nothing is retained for old versions and
-- the node pool was trimmed; returns whether that happened
CREATE FUNCTION pg_temp.wait_reclaimed() RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
  s record;
BEGIN
  FOR i IN 1 .. 100 LOOP
    SELECT * INTO s FROM cmap_stats();
    IF s.retained_bytes = 0 AND s.memory_used < 4 * 1024 * 1024 THEN
      RETURN true;
    END IF;
    PERFORM pg_sleep(0.1);
  END LOOP;
  RETURN false;
END $$;

SELECT pg_temp.wait_reclaimed();
SELECT memory_limit = 64 * 1024 * 1024 AS limit_is_64mb FROM cmap_stats();

--
-- values of several MB
--
CREATE TEMP TABLE big (k text, v text);
INSERT INTO big VALUES
  ('x5mb', repeat('x', 5 * 1024 * 1024)),
  ('mixed3mb', (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 100000) AS i)),
  ('utf8', repeat('日本語é', 100000));
BEGIN;
SELECT count(cmap_store(k, v)) FROM big;
-- the transaction reads its own pending values back
SELECT k, md5(cmap_load(k)) = md5(v) AS same, octet_length(cmap_load(k)) AS bytes FROM big ORDER BY k;
COMMIT;
SELECT k, md5(cmap_load(k)) = md5(v) AS same, octet_length(cmap_load(k)) = octet_length(v) AS same_length,
       octet_length(cmap_load(k)) AS bytes
FROM big ORDER BY k;
SELECT i.key, md5(i.value) = md5(b.v) AS same FROM cmap_iterate() i JOIN big b ON b.k = i.key ORDER BY 1;
SELECT map_bytes > 5 * 1024 * 1024 + 3200000 AS counted_in_map_bytes FROM cmap_stats();
-- swap returns the whole previous value; big values replace each other
SELECT md5(cmap_swap('x5mb', repeat('y', 6 * 1024 * 1024))) = md5(repeat('x', 5 * 1024 * 1024)) AS swapped;
SELECT octet_length(cmap_load('x5mb')), md5(cmap_load('x5mb')) = md5(repeat('y', 6 * 1024 * 1024)) AS same;
SELECT cmap_compare_and_swap('x5mb', repeat('y', 6 * 1024 * 1024), 'small now');
SELECT cmap_load('x5mb');
-- immediate mode stores big values too
SET cmapext.transactional = off;
SELECT cmap_store('imm_big', repeat('z', 2 * 1024 * 1024));
RESET cmapext.transactional;
SELECT octet_length(cmap_load('imm_big')), md5(cmap_load('imm_big')) = md5(repeat('z', 2 * 1024 * 1024)) AS same;
SELECT cmap_clear();
DROP TABLE big;

--
-- values around the inline threshold (512 bytes), and maximal keys
--
CREATE TEMP TABLE sizes AS
  SELECT n, 'len' || lpad(n::text, 5, '0') AS k,
         substr(repeat(md5(n::text), 300), 1, n) AS v
  FROM unnest(ARRAY[0, 1, 255, 510, 511, 512, 513, 514, 1023, 1024, 4095, 4096, 4097, 8192]) AS n;
SELECT count(cmap_store(k, v)) FROM sizes;
SELECT s.n, octet_length(cmap_load(s.k)) AS bytes, cmap_load(s.k) = s.v AS same
FROM sizes s ORDER BY s.n;
-- overwrite inline with out-of-line and back, in one transaction
BEGIN;
SELECT count(cmap_store(k, v || 'x')) FROM sizes;
SELECT count(*) FILTER (WHERE cmap_load(k) = v || 'x') AS own_writes_ok FROM sizes;
COMMIT;
SELECT count(*) FILTER (WHERE i.value = s.v || 'x') AS iterate_ok, count(*)
FROM cmap_iterate('len') i JOIN sizes s ON s.k = i.key;
-- same in immediate mode
SET cmapext.transactional = off;
SELECT count(cmap_store(k, v)) FROM sizes;
RESET cmapext.transactional;
SELECT count(*) FILTER (WHERE cmap_load(k) = v) AS immediate_ok FROM sizes;
SELECT cmap_clear();
-- 200 keys of 1024 bytes with 512-byte values: a few items per node
BEGIN;
SELECT count(cmap_store(lpad(i::text, 1024, '#'), repeat(chr(65 + i % 26), 512)))
FROM generate_series(1, 200) AS i;
COMMIT;
SELECT count(*), count(*) FILTER (WHERE octet_length(key) = 1024 AND octet_length(value) = 512) AS full_size,
       bool_and(value = repeat(chr(65 + ltrim(key, '#')::int % 26), 512)) AS values_ok
FROM cmap_iterate();
SELECT tree_height >= 2 AS several_levels FROM cmap_stats();
SELECT count(*) FILTER (WHERE cmap_delete(lpad(i::text, 1024, '#'))) AS deleted
FROM generate_series(1, 200, 2) AS i;
SELECT cmap_count(), bool_and(ltrim(key, '#')::int % 2 = 0) AS evens_left FROM cmap_iterate();
SELECT cmap_clear();
DROP TABLE sizes;

--
-- 100000 keys stored in one transaction
--
SELECT cmap_version() AS v0 \gset
BEGIN;
SELECT count(cmap_store('key' || lpad(i::text, 6, '0'), i::text))
FROM generate_series(1, 100000) AS i;
SELECT cmap_count();
COMMIT;
SELECT cmap_version() - :v0 AS dv, cmap_count();
SELECT count(*) AS rows, count(DISTINCT key) AS keys,
       sum(value::int) = 100000::bigint * 100001 / 2 AS values_ok,
       min(key), max(key), min(version) = max(version) AS one_version
FROM cmap_iterate();
SELECT count(*) FILTER (WHERE prev >= key COLLATE "C") AS out_of_order
FROM (SELECT key, lag(key) OVER (ORDER BY n) AS prev
      FROM cmap_iterate() WITH ORDINALITY AS t(key, value, version, n)) s;
SELECT cmap_load('key000001'), cmap_load('key050000'), cmap_load('key100000'),
       cmap_load('key100001') IS NULL AS beyond, cmap_load('key') IS NULL AS short;
SELECT count(*) FROM cmap_iterate('key0999');
SELECT tree_height >= 3 AS tall, entries FROM cmap_stats();
-- update a fifth of them in random order, with increments
BEGIN;
SELECT count(cmap_increment('key' || lpad(i::text, 6, '0'), 1000000))
FROM (SELECT i FROM generate_series(1, 100000, 5) AS i ORDER BY md5(i::text)) s;
COMMIT;
SELECT count(*) FILTER (WHERE value::int > 1000000) AS incremented FROM cmap_iterate();
SELECT cmap_load('key000001'), cmap_load('key000002');
-- delete them all again in one transaction, while iterating
SELECT cmap_version() AS v1 \gset
BEGIN;
SELECT count(*) FILTER (WHERE cmap_delete(key)) AS deleted FROM cmap_iterate();
SELECT cmap_count();
COMMIT;
SELECT cmap_count(), cmap_version() - :v1 AS dv;
SELECT entries, tree_height, map_bytes FROM cmap_stats();
SELECT pg_temp.wait_reclaimed();

--
-- the memory limit: 53200, nothing applied, the map keeps working
--
SELECT cmap_store('survivor', 'still here');
SELECT cmap_version() AS v2 \gset
-- 70 values of 1MB do not fit in 64MB
BEGIN;
SELECT count(cmap_store('mb' || i, repeat('m', 1024 * 1024))) FROM generate_series(1, 70) AS i;
COMMIT;
\echo :LAST_ERROR_SQLSTATE
SELECT cmap_count(), cmap_version() - :v2 AS dv, cmap_load('mb1') IS NULL AS not_applied;
SELECT entries, version - :v2 AS dv FROM cmap_stats();
-- a single value bigger than the whole area
SELECT cmap_store('huge', repeat('h', 65 * 1024 * 1024));
\echo :LAST_ERROR_SQLSTATE
-- smaller writes and reads still work
SELECT cmap_store('after_oom', 'ok');
SELECT key, value FROM cmap_iterate();
SELECT cmap_version() - :v2 AS dv;
-- fill, fail, repeat: every failure applies nothing and leaks nothing
SELECT cmap_version() AS v3 \gset
BEGIN;
SELECT count(cmap_store('mb' || i, repeat('m', 1024 * 1024))) FROM generate_series(1, 70) AS i;
COMMIT;
\echo :LAST_ERROR_SQLSTATE
-- a small batch (30 keys of 3MB) fails the same way
BEGIN;
SELECT count(cmap_store('mb' || i, repeat('n', 3 * 1024 * 1024))) FROM generate_series(1, 30) AS i;
SELECT cmap_store('small_in_failed_tx', 'x');
COMMIT;
\echo :LAST_ERROR_SQLSTATE
SELECT cmap_count(), cmap_version() - :v3 AS dv;
SELECT entries, version - :v3 AS dv FROM cmap_stats();
-- immediate mode: writes are published one by one until the area is full
SET cmapext.transactional = off;
DO $$
DECLARE
  i int := 0;
BEGIN
  LOOP
    i := i + 1;
    PERFORM cmap_store('imm' || lpad(i::text, 3, '0'), repeat('i', 1024 * 1024));
    EXIT WHEN i >= 100;
  END LOOP;
  RAISE NOTICE 'all % stored', i;
END $$;
\echo :LAST_ERROR_SQLSTATE
RESET cmapext.transactional;
SELECT count(*) BETWEEN 40 AND 64 AS some_published,
       bool_and(octet_length(value) = 1024 * 1024) AS complete_values
FROM cmap_iterate('imm');
SELECT cmap_version() - :v3 = count(*) AS one_version_each FROM cmap_iterate('imm');
SELECT cmap_load('survivor'), cmap_load('after_oom');
SELECT memory_used > 40 * 1024 * 1024 AS nearly_full, memory_used <= memory_limit AS within_limit
FROM cmap_stats();
-- clearing gives the memory back
SELECT cmap_clear() >= 42 AS cleared;
SELECT pg_temp.wait_reclaimed();
SELECT memory_used < 4 * 1024 * 1024 AS memory_back, retained_bytes FROM cmap_stats();

-- reclaimed memory can be used again: 40MB at a time, three times over
SELECT cmap_version() AS v4 \gset
BEGIN;
SELECT count(cmap_store('cycle1_' || i, repeat('1', 1024 * 1024))) FROM generate_series(1, 40) AS i;
COMMIT;
SELECT cmap_count(), memory_used > 40 * 1024 * 1024 AS used FROM cmap_stats();
SELECT cmap_clear();
SELECT pg_temp.wait_reclaimed();
BEGIN;
SELECT count(cmap_store('cycle2_' || i, repeat('2', 1024 * 1024))) FROM generate_series(1, 40) AS i;
COMMIT;
SELECT cmap_count(), memory_used > 40 * 1024 * 1024 AS used FROM cmap_stats();
SELECT cmap_clear();
SELECT pg_temp.wait_reclaimed();
SET cmapext.transactional = off;
SELECT count(cmap_store('cycle3_' || i, repeat('3', 1024 * 1024))) FROM generate_series(1, 40) AS i;
RESET cmapext.transactional;
SELECT cmap_count(), bool_and(value = repeat('3', 1024 * 1024)) AS values_ok FROM cmap_iterate();
SELECT cmap_version() - :v4 AS dv;
SELECT cmap_clear();
SELECT pg_temp.wait_reclaimed();
SELECT entries, retained_bytes, memory_used < 4 * 1024 * 1024 AS memory_back FROM cmap_stats();
