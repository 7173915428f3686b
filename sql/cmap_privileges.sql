--
-- cmap_privileges: EXECUTE is revoked from PUBLIC on every cmapext
-- function, and the GRANT pattern for a reader role and a writer role
-- works; catalog properties of every function (volatility, parallel
-- safety, comments).
--
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS cmapext;
CREATE EXTENSION cmapext;
DROP ROLE IF EXISTS regress_cmap_reader;
DROP ROLE IF EXISTS regress_cmap_writer;
DROP ROLE IF EXISTS regress_cmap_none;
RESET client_min_messages;

CREATE ROLE regress_cmap_reader;
CREATE ROLE regress_cmap_writer IN ROLE regress_cmap_reader;
CREATE ROLE regress_cmap_none;

-- try(sql): run sql, report 'ok: result' or the SQLSTATE and message
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  r text;
BEGIN
  EXECUTE q INTO r;
  RETURN 'ok: ' || coalesce(r, 'NULL');
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- every call of the API, in an order that makes sense for a writer
CREATE TEMP TABLE calls (n int, q text);
INSERT INTO calls VALUES
  (1,  'SELECT cmap_store(''k'', ''v'')'),
  (2,  'SELECT cmap_load(''k'')'),
  (3,  'SELECT cmap_swap(''k'', ''v2'')'),
  (4,  'SELECT cmap_load_or_store(''k'', ''v3'')'),
  (5,  'SELECT cmap_compare_and_swap(''k'', ''v2'', ''v4'')'),
  (6,  'SELECT cmap_compare_and_delete(''k'', ''v4'')'),
  (7,  'SELECT cmap_increment(''c'')'),
  (8,  'SELECT cmap_increment(''c'', 5)'),
  (9,  'SELECT cmap_delete(''c'')'),
  (10, 'SELECT cmap_count()'),
  (11, 'SELECT cmap_version() >= 0'),
  (12, 'SELECT count(*) FROM cmap_iterate()'),
  (13, 'SELECT count(*) FROM cmap_iterate(''k'')'),
  (14, 'SELECT entries FROM cmap_stats()'),
  (15, 'SELECT cmap_clear()');
GRANT SELECT ON calls TO PUBLIC;

SELECT cmap_store('seed', 's');

--
-- catalog: nothing is executable by PUBLIC; volatility, parallel safety
-- and a comment for every function
--
SELECT p.oid::regprocedure AS function,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_exec,
       p.provolatile, p.proparallel, p.proisstrict,
       obj_description(p.oid, 'pg_proc') IS NOT NULL AS has_comment
FROM pg_proc p
JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
     AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'cmapext'
ORDER BY p.proparallel, p.proname COLLATE "C";
-- the ACLs grant nothing to PUBLIC (no "=X/" entry)
SELECT count(*) AS functions,
       count(*) FILTER (WHERE p.proacl IS NULL) AS default_acl,
       count(*) FILTER (WHERE array_to_string(p.proacl, ',') ~ '(^|,)=') AS public_entries
FROM pg_proc p
JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
     AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'cmapext';

--
-- without grants every function is denied
--
SET ROLE regress_cmap_none;
SELECT n, q, pg_temp.try(q) AS result FROM calls ORDER BY n;
SELECT cmap_load('seed');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE regress_cmap_reader;
SELECT cmap_load('seed');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

--
-- the grant pattern of the README: the writer is a member of the reader
--
GRANT EXECUTE ON FUNCTION cmap_load(text), cmap_count(), cmap_version(),
                          cmap_iterate(text), cmap_stats() TO regress_cmap_reader;
GRANT EXECUTE ON FUNCTION cmap_store(text, text), cmap_delete(text), cmap_swap(text, text),
                          cmap_load_or_store(text, text),
                          cmap_compare_and_swap(text, text, text),
                          cmap_compare_and_delete(text, text),
                          cmap_increment(text, bigint), cmap_clear() TO regress_cmap_writer;

SELECT r.rolname,
       count(*) FILTER (WHERE has_function_privilege(r.oid, p.oid, 'EXECUTE')) AS executable,
       string_agg(p.proname, ', ' ORDER BY p.proname COLLATE "C")
         FILTER (WHERE has_function_privilege(r.oid, p.oid, 'EXECUTE')) AS functions
FROM pg_roles r,
     pg_proc p
     JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
          AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
     JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'cmapext'
WHERE r.rolname LIKE 'regress_cmap_%'
GROUP BY r.rolname
ORDER BY r.rolname;

-- the reader reads, and every write is denied
SET ROLE regress_cmap_reader;
SELECT n, q, pg_temp.try(q) AS result FROM calls ORDER BY n;
SELECT key, value FROM cmap_iterate();
RESET ROLE;

-- the writer can do everything
SET ROLE regress_cmap_writer;
SELECT n, q, pg_temp.try(q) AS result FROM calls ORDER BY n;
BEGIN;
SELECT cmap_store('w', 'by writer'), cmap_increment('wc', 2);
COMMIT;
SELECT key, value FROM cmap_iterate();
RESET ROLE;

-- the role without grants is still denied
SET ROLE regress_cmap_none;
SELECT count(*) FROM cmap_iterate();
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- revoking takes the right away again
REVOKE EXECUTE ON FUNCTION cmap_store(text, text) FROM regress_cmap_writer;
SET ROLE regress_cmap_writer;
SELECT cmap_store('w', 'again');
\echo :LAST_ERROR_SQLSTATE
SELECT cmap_load('w');
RESET ROLE;

--
-- cmap_mirror: creating the trigger needs EXECUTE on cmap_mirror(); users
-- who only change the mirrored table need no grant
--
CREATE TABLE regress_cmap_mirrored (id int PRIMARY KEY, name text);
ALTER TABLE regress_cmap_mirrored OWNER TO regress_cmap_none;
SET ROLE regress_cmap_none;
CREATE TRIGGER mirror AFTER INSERT OR UPDATE OR DELETE ON regress_cmap_mirrored
  FOR EACH ROW EXECUTE FUNCTION cmap_mirror('id', 'row:');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
ALTER TABLE regress_cmap_mirrored OWNER TO CURRENT_USER;
CREATE TRIGGER mirror AFTER INSERT OR UPDATE OR DELETE ON regress_cmap_mirrored
  FOR EACH ROW EXECUTE FUNCTION cmap_mirror('id', 'row:');
GRANT INSERT, UPDATE, DELETE, SELECT ON regress_cmap_mirrored TO regress_cmap_none;
SET ROLE regress_cmap_none;
INSERT INTO regress_cmap_mirrored VALUES (1, 'one'), (2, 'two');
UPDATE regress_cmap_mirrored SET name = 'deux' WHERE id = 2;
DELETE FROM regress_cmap_mirrored WHERE id = 1;
SELECT cmap_load('row:2');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT key, value FROM cmap_iterate('row:');
DROP TABLE regress_cmap_mirrored;

SELECT cmap_clear();
DROP TABLE calls;
DROP OWNED BY regress_cmap_reader, regress_cmap_writer, regress_cmap_none;
DROP ROLE regress_cmap_reader;
DROP ROLE regress_cmap_writer;
DROP ROLE regress_cmap_none;
