--
-- cmap_order: cmap_iterate() returns keys in ascending byte order (the
-- order of COLLATE "C"), and cmap_iterate(prefix) returns exactly the keys
-- that start with prefix.
--
-- Covers ASCII case, keys that are prefixes of each other, multibyte UTF-8
-- keys, the empty key, every kind of prefix (none matching, equal to a
-- key, '', NULL, longer than the keys, at either end of the key range), the
-- transaction's own writes merged into the scan, and a few thousand
-- generated keys spread over many tree nodes.
--
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS cmapext;
CREATE EXTENSION cmapext;
RESET client_min_messages;

-- k(text): the text itself if it is printable ASCII, else with every
-- other byte as \xNN, so that the output does not depend on the encoding
CREATE FUNCTION pg_temp.k(t text) RETURNS text LANGUAGE sql AS $$
  SELECT coalesce(string_agg(CASE WHEN b BETWEEN 32 AND 126 THEN chr(b)
                                  ELSE '\x' || lpad(to_hex(b), 2, '0') END,
                             '' ORDER BY i), '')
  FROM (SELECT i, get_byte(convert_to(t, current_setting('server_encoding')), i) AS b
        FROM generate_series(0, octet_length(t) - 1) AS i) AS bytes
$$;

CREATE TEMP TABLE keys (k text NOT NULL);
INSERT INTO keys VALUES
  ('a'), ('B'), ('b'), ('A'), ('ab'), ('abc'), ('abd'), ('a b'), ('ab~'),
  ('z'), ('~'), ('0'), ('09'), ('é'), ('éa'), ('e'), ('日本'), ('日'),
  ('日本語'), ('😀'), ('');
SELECT count(cmap_store(k, 'v:' || k)) FROM keys;
SELECT cmap_count();

-- byte order
SELECT pg_temp.k(key) AS key, value = 'v:' || key AS value_ok FROM cmap_iterate();

-- the same as ORDER BY ... COLLATE "C"
SELECT array_agg(key) = (SELECT array_agg(k ORDER BY k COLLATE "C") FROM keys)
  AS same_order
FROM cmap_iterate();

-- the empty string is a valid key, distinct from an absent one
SELECT cmap_load('') AS empty_key_value;
SELECT cmap_load(' ') IS NULL AS space_absent;

--
-- prefix scans
--
SELECT pg_temp.k(key) AS key FROM cmap_iterate('a');
SELECT pg_temp.k(key) AS key FROM cmap_iterate('ab');       -- prefix equal to a whole key
SELECT pg_temp.k(key) AS key FROM cmap_iterate('abc');      -- equal to a key, no extension
SELECT pg_temp.k(key) AS key FROM cmap_iterate('abcd');     -- longer than every key
SELECT pg_temp.k(key) AS key FROM cmap_iterate('B');
SELECT pg_temp.k(key) AS key FROM cmap_iterate('aa');       -- between keys, matches nothing
SELECT pg_temp.k(key) AS key FROM cmap_iterate('!');        -- before the first non-empty key
SELECT pg_temp.k(key) AS key FROM cmap_iterate('0');
SELECT pg_temp.k(key) AS key FROM cmap_iterate('é');
SELECT pg_temp.k(key) AS key FROM cmap_iterate('日本');
SELECT pg_temp.k(key) AS key FROM cmap_iterate('😀');       -- the last key
SELECT pg_temp.k(key) AS key FROM cmap_iterate('😀😀');     -- past the end of the key range
SELECT pg_temp.k(key) AS key FROM cmap_iterate('🙂');       -- after the last key
-- '' and NULL mean no filter
SELECT count(*) AS all_with_empty FROM cmap_iterate('');
SELECT count(*) AS all_with_null FROM cmap_iterate(NULL);
SELECT count(*) AS all_by_default FROM cmap_iterate();
SELECT array_agg(key) = (SELECT array_agg(key) FROM cmap_iterate(NULL))
  AS empty_equals_null
FROM cmap_iterate('');

-- every prefix of every key, and a few more, against a SQL filter
SELECT p, (SELECT array_agg(key) FROM cmap_iterate(p))
          IS NOT DISTINCT FROM
          (SELECT array_agg(k ORDER BY k COLLATE "C") FROM keys
           WHERE starts_with(k, p)) AS same
FROM (SELECT DISTINCT substr(k, 1, n) AS p
      FROM keys, generate_series(1, 3) AS n
      UNION SELECT 'c' UNION SELECT 'zz' UNION SELECT 'ac') AS prefixes
WHERE (SELECT array_agg(key) FROM cmap_iterate(p))
      IS DISTINCT FROM
      (SELECT array_agg(k ORDER BY k COLLATE "C") FROM keys
       WHERE starts_with(k, p));

--
-- the transaction's own writes are merged into the scan in order
--
BEGIN;
SELECT cmap_store('aa', 'new'), cmap_store('abb', 'new'), cmap_store('zz', 'new'),
       cmap_store('A', 'changed'), cmap_delete('ab'), cmap_delete('z');
SELECT cmap_increment('ab0', 5);
SELECT pg_temp.k(key) AS key, pg_temp.k(value) AS value, version IS NULL AS own FROM cmap_iterate();
SELECT key, value FROM cmap_iterate('ab');
SELECT key, value FROM cmap_iterate('z');
SELECT key, value FROM cmap_iterate('a b');
ROLLBACK;
-- after a cmap_clear() only the transaction's later writes are visible
BEGIN;
SELECT cmap_clear();
SELECT cmap_store('b2', 'x'), cmap_store('b1', 'x'), cmap_store('a9', 'x');
SELECT pg_temp.k(key) AS key FROM cmap_iterate();
SELECT pg_temp.k(key) AS key FROM cmap_iterate('b');
ROLLBACK;
SELECT cmap_count();

--
-- thousands of keys over many tree nodes: strictly increasing, no
-- duplicates, nothing missing, prefix scans exact
--
SELECT cmap_clear();
TRUNCATE keys;
INSERT INTO keys
  SELECT md5(i::text) FROM generate_series(1, 3000) AS i
  UNION ALL
  SELECT 'k' || lpad(i::text, 5, '0') FROM generate_series(1, 3000) AS i
  UNION ALL
  SELECT repeat('x', i % 50) || i FROM generate_series(1, 1000) AS i;
-- stored in random order, in two transactions
SELECT count(cmap_store(k, k)) FROM (SELECT k FROM keys ORDER BY md5(k || 'a')
                                     LIMIT 3500) s;
SELECT count(cmap_store(k, k)) FROM (SELECT k FROM keys ORDER BY md5(k || 'a')
                                     OFFSET 3500) s;
SELECT cmap_count(), (SELECT count(*) FROM keys) AS expected;
SELECT tree_height > 1 AS several_levels FROM cmap_stats();
SELECT count(*) AS rows,
       count(DISTINCT key) AS distinct_keys,
       count(*) FILTER (WHERE prev >= key COLLATE "C") AS out_of_order,
       count(*) FILTER (WHERE value <> key) AS bad_values
FROM (SELECT key, value,
             lag(key) OVER (ORDER BY n) AS prev
      FROM cmap_iterate() WITH ORDINALITY AS t(key, value, version, n)) s;
SELECT array_agg(key) = (SELECT array_agg(k ORDER BY k COLLATE "C") FROM keys)
  AS same_order
FROM cmap_iterate();
-- every one- and two-character prefix, plus prefixes of the counters
SELECT count(*) AS prefixes_checked,
       count(*) FILTER (WHERE got IS DISTINCT FROM want) AS mismatches
FROM (SELECT p,
             (SELECT array_agg(key) FROM cmap_iterate(p)) AS got,
             (SELECT array_agg(k ORDER BY k COLLATE "C") FROM keys
              WHERE starts_with(k, p)) AS want
      FROM (SELECT DISTINCT substr(k, 1, 1) AS p FROM keys
            UNION SELECT DISTINCT substr(k, 1, 2) FROM keys
            UNION SELECT 'k' || lpad(i::text, 4, '0') FROM generate_series(0, 300) AS i
            UNION SELECT 'xxxxx') AS prefixes) s;
SELECT count(*) FROM cmap_iterate('k0');
SELECT count(*) FROM cmap_iterate('k0299');
SELECT pg_temp.k(key) AS key FROM cmap_iterate('k0300');
SELECT pg_temp.k(key) AS key FROM cmap_iterate('k03001');
-- spot loads
SELECT cmap_load(md5('1')) = md5('1') AS md5_1,
       cmap_load('k02999') AS k02999,
       cmap_load('k03001') IS NULL AS k03001_absent;
SELECT cmap_clear();
