--
-- cmap_mirror: the trigger that mirrors a table into the map, end to end.
--
-- AFTER INSERT OR UPDATE OR DELETE ... FOR EACH ROW EXECUTE FUNCTION
-- cmap_mirror('key_column' [, 'key_prefix']): INSERT stores
-- prefix || key -> row_to_json(NEW)::text, DELETE removes the key, an
-- UPDATE that changes the key moves the entry; an AFTER TRUNCATE ... FOR
-- EACH STATEMENT trigger with a prefix deletes every key with the prefix.
-- Covers exact JSON values, key moves, multi-row statements (one version
-- per transaction), rolled-back transactions, failed statements, savepoints
-- and exception blocks, non-text key columns, prefix and no prefix,
-- TRUNCATE, partitioned tables, the mirror staying transactional with
-- cmapext.transactional = off, every error path with its SQLSTATE, and
-- queries joining a table with its mirror.
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

-- the mirror of a prefix: key, value, entry version - v (own when pending)
CREATE FUNCTION pg_temp.mirror(p text, v bigint)
RETURNS TABLE (key text, value text, dv text) LANGUAGE sql AS $$
  SELECT key, value, coalesce((version - v)::text, 'own') FROM cmap_iterate(p)
$$;

-- a key outside every prefix used below, to show it is never touched
SELECT cmap_store('unrelated', 'u'), cmap_store('item', 'no colon');

--
-- INSERT / UPDATE / DELETE with a prefix, exact JSON values
--
CREATE TABLE cmap_items (
  id int PRIMARY KEY,
  name text,
  price numeric(10,2),
  in_stock boolean,
  tags text[],
  meta jsonb,
  added date
);
CREATE TRIGGER cmap_items_mirror
  AFTER INSERT OR UPDATE OR DELETE ON cmap_items
  FOR EACH ROW EXECUTE FUNCTION cmap_mirror('id', 'item:');
CREATE TRIGGER cmap_items_mirror_truncate
  AFTER TRUNCATE ON cmap_items
  FOR EACH STATEMENT EXECUTE FUNCTION cmap_mirror('id', 'item:');

SELECT cmap_version() AS v0 \gset
INSERT INTO cmap_items VALUES
  (1, 'plain', 9.50, true, '{a,b}', '{"k": [1, 2]}', '2024-01-31'),
  (2, E'quote " backslash \\ newline \n tab \t', 0, false, '{}', 'null', NULL),
  (3, 'ünïcödé ✓', NULL, NULL, NULL, NULL, '1999-12-31');
-- one statement in autocommit: one version for all three rows
SELECT * FROM pg_temp.mirror('item:', :v0);
-- each value is exactly row_to_json of the row
SELECT i.id, cmap_load('item:' || i.id) = row_to_json(i)::text AS exact
FROM cmap_items i ORDER BY i.id;
-- keys outside the prefix are untouched
SELECT cmap_load('unrelated'), cmap_load('item');

-- UPDATE of a non-key column: the entry is rewritten, the key stays
UPDATE cmap_items SET price = price + 1, tags = tags || '{c}'::text[] WHERE id = 1;
SELECT * FROM pg_temp.mirror('item:', :v0);
-- UPDATE that changes nothing still rewrites (it is a row update)
UPDATE cmap_items SET name = name WHERE id = 3;
SELECT key, dv FROM pg_temp.mirror('item:3', :v0);

-- UPDATE of the key column moves the entry
UPDATE cmap_items SET id = 10 WHERE id = 2;
SELECT key, dv FROM pg_temp.mirror('item:', :v0);
SELECT cmap_load('item:2') IS NULL AS old_key_gone,
       cmap_load('item:10') = (SELECT row_to_json(i)::text FROM cmap_items i WHERE id = 10) AS moved;

-- DELETE removes the key
DELETE FROM cmap_items WHERE id = 3;
SELECT key, dv FROM pg_temp.mirror('item:', :v0);
SELECT cmap_version() - :v0 AS dv;                   -- 5 statements, 5 versions

--
-- Multi-row statements and multi-statement transactions: one version each
--
SELECT cmap_version() AS v1 \gset
INSERT INTO cmap_items (id, name) SELECT g, 'bulk ' || g FROM generate_series(100, 299) g;
SELECT count(*) AS entries, min(dv), max(dv) FROM pg_temp.mirror('item:', :v1) WHERE key >= 'item:100' AND key < 'item:3';
BEGIN;
UPDATE cmap_items SET name = 'even ' || id WHERE id BETWEEN 100 AND 299 AND id % 2 = 0;
DELETE FROM cmap_items WHERE id BETWEEN 100 AND 299 AND id % 2 = 1;
-- own pending writes are visible to the transaction, without a version
SELECT count(*) FILTER (WHERE dv = 'own') AS pending, count(*) AS entries
FROM pg_temp.mirror('item:', :v1) WHERE key ~ '^item:[12][0-9][0-9]$';
COMMIT;
SELECT count(*) AS entries, min(dv), max(dv)
FROM pg_temp.mirror('item:', :v1) WHERE key ~ '^item:[12][0-9][0-9]$';
SELECT cmap_version() - :v1 AS dv;                   -- 2
-- the mirror matches the table row for row
SELECT count(*) AS rows,
       count(*) FILTER (WHERE cmap_load('item:' || i.id) = row_to_json(i)::text) AS mirrored
FROM cmap_items i;
SELECT count(*) AS entries FROM cmap_iterate('item:');

-- a multi-row UPDATE moving many keys (to keys no other row had)
UPDATE cmap_items SET id = id + 1000 WHERE id BETWEEN 100 AND 299;
SELECT count(*) AS moved FROM cmap_iterate('item:1') WHERE key ~ '^item:1[12][0-9][0-9]$';
UPDATE cmap_items SET id = id - 1000 WHERE id BETWEEN 1100 AND 1299;
SELECT (SELECT count(*) FROM cmap_iterate('item:') WHERE key ~ '^item:[12][0-9][0-9]$') AS moved_back,
       (SELECT count(*) FROM cmap_iterate('item:')) AS entries;

--
-- Querying the mirror: join the table with its JSON entries
--
SELECT i.id, i.name, m.v->>'name' AS mirrored_name, (m.v->>'id')::int = i.id AS same_id
FROM cmap_items i
CROSS JOIN LATERAL (SELECT cmap_load('item:' || i.id)::json AS v) m
WHERE i.id < 100 OR i.id % 50 = 0 ORDER BY i.id;
-- entries without a row, and rows without an entry: none
SELECT count(*) AS stale_entries
FROM cmap_iterate('item:') e
LEFT JOIN cmap_items i ON 'item:' || i.id = e.key
WHERE i.id IS NULL;
SELECT count(*) AS unmirrored_rows
FROM cmap_items i
WHERE cmap_load('item:' || i.id) IS NULL;
-- the JSON holds every column: compare as jsonb
SELECT count(*) AS rows,
       count(*) FILTER (WHERE cmap_load('item:' || i.id)::jsonb = to_jsonb(i)) AS equal
FROM cmap_items i;


--
-- Rolled-back transactions and failed statements leave no trace
--
SELECT cmap_version() AS v2 \gset
BEGIN;
INSERT INTO cmap_items VALUES (50, 'rolled back');
UPDATE cmap_items SET id = 51 WHERE id = 1;
DELETE FROM cmap_items WHERE id = 10;
SELECT key FROM cmap_iterate('item:') WHERE key < 'item:100' OR key >= 'item:3';
ROLLBACK;
SELECT key FROM cmap_iterate('item:') WHERE key < 'item:100' OR key >= 'item:3';
SELECT cmap_version() - :v2 AS dv;
-- a statement that fails on a constraint: nothing of it is mirrored
INSERT INTO cmap_items (id, name) VALUES (70, 'a'), (71, 'b'), (1, 'duplicate');
\echo :SQLSTATE
SELECT cmap_load('item:70') IS NULL AS absent70, cmap_version() - :v2 AS dv;
-- inside a transaction: the failed statement's savepoint rollback removes
-- its mirrored writes, the earlier statement's stay
BEGIN;
INSERT INTO cmap_items (id, name) VALUES (80, 'kept');
SAVEPOINT s;
UPDATE cmap_items SET name = 'undone' WHERE id = 80;
INSERT INTO cmap_items (id, name) VALUES (81, 'undone');
DELETE FROM cmap_items WHERE id = 1;
SELECT cmap_load('item:1') IS NULL AS deleted1, cmap_load('item:81') IS NOT NULL AS has81;
ROLLBACK TO SAVEPOINT s;
SELECT cmap_load('item:80')::json->>'name' AS name80, cmap_load('item:81') IS NULL AS absent81,
       cmap_load('item:1') IS NOT NULL AS has1;
-- a PL/pgSQL exception block undoes the mirrored writes of its body
DO $$
BEGIN
  UPDATE cmap_items SET name = 'exception' WHERE id = 80;
  INSERT INTO cmap_items (id, name) VALUES (82, 'exception');
  RAISE EXCEPTION 'undo';
EXCEPTION WHEN raise_exception THEN
  NULL;
END $$;
SELECT cmap_load('item:80')::json->>'name' AS name80, cmap_load('item:82') IS NULL AS absent82;
COMMIT;
SELECT key, value, dv FROM pg_temp.mirror('item:8', :v2);
SELECT cmap_version() - :v2 AS dv;                   -- 1

--
-- cmapext.transactional = off does not make the mirror immediate
--
SET cmapext.transactional = off;
SELECT cmap_version() AS v3 \gset
BEGIN;
INSERT INTO cmap_items (id, name) VALUES (90, 'never');
DELETE FROM cmap_items WHERE id = 80;
SELECT cmap_store('immediate', 'yes');               -- this one is immediate
ROLLBACK;
SELECT cmap_load('item:90') IS NULL AS absent90, cmap_load('item:80') IS NOT NULL AS has80,
       cmap_load('immediate'), cmap_version() - :v3 AS dv;   -- t, t, yes, 1
-- and a committed transaction's mirror writes are one version, at commit
BEGIN;
INSERT INTO cmap_items (id, name) VALUES (91, 'a');
INSERT INTO cmap_items (id, name) VALUES (92, 'b');
SELECT key, dv FROM pg_temp.mirror('item:9', :v3);   -- own
COMMIT;
SELECT key, dv FROM pg_temp.mirror('item:9', :v3);
SELECT cmap_version() - :v3 AS dv;                   -- 2
RESET cmapext.transactional;

--
-- TRUNCATE with a prefix deletes every key with the prefix (and nothing
-- else), in the transaction: ROLLBACK brings them back
--
SELECT count(*) AS before FROM cmap_iterate('item:');
BEGIN;
INSERT INTO cmap_items (id, name) VALUES (95, 'pending');
SELECT cmap_store('item:manual', 'not from the table');
TRUNCATE cmap_items;
SELECT count(*) AS during FROM cmap_iterate('item:');
ROLLBACK;
SELECT (SELECT count(*) FROM cmap_iterate('item:')) AS after_rollback,
       cmap_load('item:95') IS NULL AS absent95, cmap_load('item:manual') IS NULL AS absent_manual;
SELECT cmap_version() AS v4 \gset
BEGIN;
INSERT INTO cmap_items (id, name) VALUES (95, 'pending');
TRUNCATE cmap_items;
INSERT INTO cmap_items (id, name) VALUES (96, 'after truncate');
COMMIT;
SELECT key, dv FROM pg_temp.mirror('item:', :v4);
SELECT cmap_load('unrelated'), cmap_load('item'), cmap_version() - :v4 AS dv;

--
-- Key columns of other types: the key is the column's text output
--
CREATE TABLE cmap_by_uuid (u uuid PRIMARY KEY, n int);
CREATE TRIGGER m AFTER INSERT OR UPDATE OR DELETE ON cmap_by_uuid
  FOR EACH ROW EXECUTE FUNCTION cmap_mirror('u', 'uuid:');
INSERT INTO cmap_by_uuid VALUES ('A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', 1);
SELECT key, value FROM cmap_iterate('uuid:');
UPDATE cmap_by_uuid SET u = 'b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12';
SELECT key, value FROM cmap_iterate('uuid:');
DELETE FROM cmap_by_uuid;
SELECT count(*) FROM cmap_iterate('uuid:');

SET DateStyle = 'ISO, MDY';
CREATE TABLE cmap_by_date (d date PRIMARY KEY, n int);
CREATE TRIGGER m AFTER INSERT OR UPDATE OR DELETE ON cmap_by_date
  FOR EACH ROW EXECUTE FUNCTION cmap_mirror('d', 'date:');
INSERT INTO cmap_by_date VALUES ('2024-02-29', 1), ('2023-12-31', 2);
SELECT key, value FROM cmap_iterate('date:');        -- byte order of the keys
UPDATE cmap_by_date SET d = d + 1 WHERE n = 1;
SELECT key, value FROM cmap_iterate('date:');
DELETE FROM cmap_by_date WHERE n = 2;
SELECT key, value FROM cmap_iterate('date:');
RESET DateStyle;

-- an int key without a prefix: the key is the bare number; a quoted,
-- mixed-case column name works
CREATE TABLE cmap_noprefix ("Row Id" bigint, v text);
CREATE TRIGGER m AFTER INSERT OR UPDATE OR DELETE ON cmap_noprefix
  FOR EACH ROW EXECUTE FUNCTION cmap_mirror('Row Id');
INSERT INTO cmap_noprefix VALUES (-7, 'neg'), (9000000000, 'big');
SELECT cmap_load('-7'), cmap_load('9000000000');
UPDATE cmap_noprefix SET "Row Id" = 8 WHERE v = 'neg';
SELECT cmap_load('-7') IS NULL AS moved, cmap_load('8');
DELETE FROM cmap_noprefix;
SELECT cmap_load('8') IS NULL AS gone8, cmap_load('9000000000') IS NULL AS gone_big;
-- TRUNCATE without a prefix would delete the whole map: refused (39P01)
CREATE TRIGGER mt AFTER TRUNCATE ON cmap_noprefix
  FOR EACH STATEMENT EXECUTE FUNCTION cmap_mirror('Row Id');
INSERT INTO cmap_noprefix VALUES (1, 'x');
TRUNCATE cmap_noprefix;
\echo :SQLSTATE
SELECT count(*) AS rows FROM cmap_noprefix;
SELECT cmap_load('1') IS NOT NULL AS still_mirrored, cmap_load('unrelated');
-- an empty prefix is no prefix
DROP TRIGGER mt ON cmap_noprefix;
CREATE TRIGGER mt AFTER TRUNCATE ON cmap_noprefix
  FOR EACH STATEMENT EXECUTE FUNCTION cmap_mirror('Row Id', '');
TRUNCATE cmap_noprefix;
\echo :SQLSTATE
DROP TRIGGER mt ON cmap_noprefix;
DELETE FROM cmap_noprefix;

--
-- Large rows: values beyond a leaf's inline size are stored exactly
--
INSERT INTO cmap_items (id, name) VALUES (97, repeat('x', 100000));
SELECT length(cmap_load('item:97')) AS len,
       cmap_load('item:97') = (SELECT row_to_json(i)::text FROM cmap_items i WHERE id = 97) AS exact;
DELETE FROM cmap_items WHERE id = 97;

--
-- Dropped and generated columns: the value is row_to_json of the row as
-- the table has it now; renaming the key column breaks the trigger (its
-- argument is a column name) with 42703 and the statement applies nothing;
-- PREPARE TRANSACTION after mirrored writes: 0A000, nothing applied
--
CREATE TABLE cmap_cols (id int, gone text, b text, twice int GENERATED ALWAYS AS (id * 2) STORED);
CREATE TRIGGER m AFTER INSERT OR UPDATE OR DELETE ON cmap_cols
  FOR EACH ROW EXECUTE FUNCTION cmap_mirror('id', 'cols:');
ALTER TABLE cmap_cols DROP COLUMN gone;
INSERT INTO cmap_cols (id, b) VALUES (1, 'bee');
SELECT cmap_load('cols:1'), cmap_load('cols:1') = (SELECT row_to_json(c)::text FROM cmap_cols c) AS exact;
ALTER TABLE cmap_cols RENAME COLUMN id TO ident;
UPDATE cmap_cols SET b = 'renamed';
\echo :SQLSTATE
ALTER TABLE cmap_cols RENAME COLUMN ident TO id;
SELECT b FROM cmap_cols;
SELECT cmap_load('cols:1')::json->>'b' AS mirrored_b;
BEGIN;
INSERT INTO cmap_cols (id, b) VALUES (2, 'prepared');
PREPARE TRANSACTION 'regress_cmap_mirror_1';
\echo :SQLSTATE
SELECT count(*) AS rows, cmap_load('cols:2') IS NULL AS not_mirrored,
       (SELECT count(*) FROM pg_prepared_xacts WHERE gid = 'regress_cmap_mirror_1') AS prepared
FROM cmap_cols;
DROP TABLE cmap_cols;

--
-- Partitioned table: a row moving between partitions stays mirrored
--
CREATE TABLE cmap_parted (id int, region text, v text) PARTITION BY LIST (region);
CREATE TABLE cmap_parted_eu PARTITION OF cmap_parted FOR VALUES IN ('eu');
CREATE TABLE cmap_parted_us PARTITION OF cmap_parted FOR VALUES IN ('us');
CREATE TRIGGER m AFTER INSERT OR UPDATE OR DELETE ON cmap_parted
  FOR EACH ROW EXECUTE FUNCTION cmap_mirror('id', 'part:');
INSERT INTO cmap_parted VALUES (1, 'eu', 'a'), (2, 'us', 'b');
UPDATE cmap_parted SET region = 'us' WHERE id = 1;
UPDATE cmap_parted SET region = 'eu', id = 5 WHERE id = 2;
SELECT key, value FROM cmap_iterate('part:');
DROP TABLE cmap_parted;

--
-- Errors, with their SQLSTATE; nothing is applied
--
SELECT cmap_version() AS v5 \gset
-- not called as a trigger
SELECT cmap_mirror();
\echo :SQLSTATE
CREATE TABLE cmap_bad (id int, v text);
INSERT INTO cmap_bad VALUES (1, 'one');
-- every bad trigger definition fails at its first firing, with 39P01 or
-- 42703; the table change is rolled back with it
SELECT d AS definition,
       pg_temp.try('CREATE TRIGGER bad ' || d) AS create_trigger,
       pg_temp.try('INSERT INTO cmap_bad VALUES (2, ''two'')') AS on_insert,
       pg_temp.try('UPDATE cmap_bad SET v = ''uno'' WHERE id = 1') AS on_update,
       pg_temp.try('DELETE FROM cmap_bad WHERE id = 1') AS on_delete,
       pg_temp.try('DROP TRIGGER bad ON cmap_bad') AS dropped
FROM unnest(ARRAY[
  'BEFORE INSERT OR UPDATE OR DELETE ON cmap_bad FOR EACH ROW EXECUTE FUNCTION cmap_mirror(''id'')',
  'AFTER INSERT OR UPDATE OR DELETE ON cmap_bad FOR EACH STATEMENT EXECUTE FUNCTION cmap_mirror(''id'')',
  'AFTER INSERT OR UPDATE OR DELETE ON cmap_bad FOR EACH ROW EXECUTE FUNCTION cmap_mirror()',
  'AFTER INSERT OR UPDATE OR DELETE ON cmap_bad FOR EACH ROW EXECUTE FUNCTION cmap_mirror(''id'', ''p:'', ''extra'')',
  'AFTER INSERT OR UPDATE OR DELETE ON cmap_bad FOR EACH ROW EXECUTE FUNCTION cmap_mirror(''nosuch'')',
  'AFTER INSERT OR UPDATE OR DELETE ON cmap_bad FOR EACH ROW EXECUTE FUNCTION cmap_mirror(''ctid'')',
  'AFTER INSERT OR UPDATE OR DELETE ON cmap_bad FOR EACH ROW EXECUTE FUNCTION cmap_mirror(''ID'')'
]) WITH ORDINALITY AS t(d, i)
ORDER BY i;
-- a BEFORE trigger at top level, with the full message
CREATE TRIGGER bad BEFORE INSERT ON cmap_bad
  FOR EACH ROW EXECUTE FUNCTION cmap_mirror('id');
INSERT INTO cmap_bad VALUES (2, 'two');
\echo :SQLSTATE
DROP TRIGGER bad ON cmap_bad;
-- TRUNCATE with wrong arguments
CREATE TRIGGER bad AFTER TRUNCATE ON cmap_bad
  FOR EACH STATEMENT EXECUTE FUNCTION cmap_mirror();
TRUNCATE cmap_bad;
\echo :SQLSTATE
DROP TRIGGER bad ON cmap_bad;
-- an INSTEAD OF trigger on a view is not AFTER
CREATE VIEW cmap_bad_view AS SELECT * FROM cmap_bad;
CREATE TRIGGER bad INSTEAD OF INSERT ON cmap_bad_view
  FOR EACH ROW EXECUTE FUNCTION cmap_mirror('id', 'view:');
INSERT INTO cmap_bad_view VALUES (3, 'three');
\echo :SQLSTATE
DROP VIEW cmap_bad_view;
SELECT id, v FROM cmap_bad ORDER BY id;              -- unchanged

-- NULL key: 22004, on INSERT, on UPDATE to NULL, and nothing applied:
-- row 4 is mirrored by the trigger before the NULL row fails, and its
-- entry goes with the failed statement
CREATE TRIGGER good AFTER INSERT OR UPDATE OR DELETE ON cmap_bad
  FOR EACH ROW EXECUTE FUNCTION cmap_mirror('id', 'bad:');
INSERT INTO cmap_bad VALUES (4, 'four'), (NULL, 'null key');
\echo :SQLSTATE
UPDATE cmap_bad SET id = NULL WHERE id = 1;
\echo :SQLSTATE
SELECT count(*) AS mirrored FROM cmap_iterate('bad:');
-- key longer than 1024 bytes (prefix included): 54000; 1024 is fine
ALTER TABLE cmap_bad ALTER COLUMN id TYPE text;
INSERT INTO cmap_bad VALUES (repeat('k', 1020), 'fits');     -- 4 + 1020
SELECT length(key) FROM cmap_iterate('bad:');
INSERT INTO cmap_bad VALUES (repeat('k', 1021), 'too long'); -- 4 + 1021
\echo :SQLSTATE
UPDATE cmap_bad SET id = id || 'k' WHERE v = 'fits';
\echo :SQLSTATE
SELECT count(*) AS rows FROM cmap_bad;
SELECT length(key) FROM cmap_iterate('bad:');
DROP TABLE cmap_bad;
-- of all the statements above, only the 1020-byte row was mirrored
SELECT cmap_version() - :v5 AS dv;

-- after every error path above, all kinds of commits still go through at
-- once (the timeout turns a leak into an error instead of a hang; DO
-- blocks, because statement_timeout does not cover an autocommit commit)
SET statement_timeout = '10s';
DO $$
BEGIN
  INSERT INTO cmap_items (id, name) SELECT g, 'final' FROM generate_series(1000, 1099) g;
  COMMIT;
  PERFORM cmap_compare_and_swap('item:1000', cmap_load('item:1000'), 'cas');
  COMMIT;
END $$;
RESET statement_timeout;
SELECT count(*) AS final_entries, count(*) FILTER (WHERE value = 'cas') AS cas
FROM cmap_iterate('item:1');
DELETE FROM cmap_items WHERE id >= 1000;

-- after everything above, the mirror still matches the table exactly
SELECT count(*) AS rows,
       count(*) FILTER (WHERE cmap_load('item:' || i.id) = row_to_json(i)::text) AS mirrored,
       (SELECT count(*) FROM cmap_iterate('item:')) AS entries
FROM cmap_items i;

DROP TABLE cmap_items, cmap_by_uuid, cmap_by_date, cmap_noprefix;
-- leave the database clean for the suites that follow
SELECT cmap_clear() > 0 AS cleared;
