--
-- cmap_scan: the streaming custom scan that replaces cmap_iterate() in FROM
-- clauses.  It must return exactly what the function returns, check
-- EXECUTE like a function call, and step aside where it cannot apply.
--
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS cmapext;
CREATE EXTENSION cmapext;
RESET client_min_messages;

SELECT count(cmap_store('s:' || lpad(i::text, 4, '0'), repeat('v', i % 7) || i))
FROM generate_series(1, 2000) i;

-- the plain call is streamed
EXPLAIN (COSTS OFF) SELECT count(*), sum(length(value)) FROM cmap_iterate();
EXPLAIN (COSTS OFF) SELECT key FROM cmap_iterate('s:00') WHERE value LIKE 'v%';

-- same rows, same order, with and without the custom scan
CREATE TEMP TABLE via_scan AS
	SELECT row_number() OVER () AS n, key, value, version FROM cmap_iterate();
SET cmapext.custom_scan = off;
EXPLAIN (COSTS OFF) SELECT count(*) FROM cmap_iterate();
CREATE TEMP TABLE via_function AS
	SELECT row_number() OVER () AS n, key, value, version FROM cmap_iterate();
RESET cmapext.custom_scan;
SELECT count(*) AS rows,
       count(*) FILTER (WHERE f.n IS NULL OR s.n IS NULL
                        OR f.key <> s.key OR f.value <> s.value
                        OR f.version <> s.version) AS different
FROM via_scan s FULL JOIN via_function f USING (n);

-- the transaction's own writes are merged in, with version NULL
BEGIN;
SELECT cmap_store('s:0001', 'mine'), cmap_delete('s:0002'), cmap_store('s:00015', 'new');
SELECT key, value, version IS NULL AS own FROM cmap_iterate('s:000') LIMIT 4;
ROLLBACK;

-- only the needed columns are built; filters and projections still work
SELECT count(*), min(key), max(key) FROM cmap_iterate('s:01') WHERE value LIKE 'vv%';
SELECT max(version) = cmap_version() AS latest FROM cmap_iterate();

-- prefix given as a parameter of a prepared statement
PREPARE by_prefix(text) AS SELECT count(*) FROM cmap_iterate($1);
EXECUTE by_prefix('s:1');
EXECUTE by_prefix('s:19');
EXECUTE by_prefix(NULL);
DEALLOCATE by_prefix;

-- where the custom scan does not apply, the function runs as usual
EXPLAIN (COSTS OFF) SELECT * FROM cmap_iterate() WITH ORDINALITY LIMIT 1;
EXPLAIN (COSTS OFF) SELECT c FROM cmap_iterate() c LIMIT 1;
EXPLAIN (COSTS OFF) SELECT * FROM (VALUES ('s:1'), ('s:2')) p(x), LATERAL cmap_iterate(p.x) LIMIT 1;
SELECT count(*) FROM (VALUES ('s:1'), ('s:2')) p(x), LATERAL cmap_iterate(p.x);
SELECT (c).key FROM cmap_iterate('s:0001') c;

-- a user function that happens to be called cmap_iterate is left alone
CREATE FUNCTION public_cmap_iterate_lookalike() RETURNS SETOF int
	LANGUAGE sql AS 'SELECT 1';
EXPLAIN (COSTS OFF) SELECT * FROM public_cmap_iterate_lookalike();
DROP FUNCTION public_cmap_iterate_lookalike();

-- EXECUTE is checked at run time, for the role running the plan
CREATE ROLE regress_cmap_scan_none;
CREATE ROLE regress_cmap_scan_reader;
GRANT EXECUTE ON FUNCTION cmap_iterate(text) TO regress_cmap_scan_reader;
PREPARE total AS SELECT count(*) FROM cmap_iterate();
SET ROLE regress_cmap_scan_none;
\set VERBOSITY terse
SELECT count(*) FROM cmap_iterate();
EXECUTE total;
\set VERBOSITY default
RESET ROLE;
SET ROLE regress_cmap_scan_reader;
SELECT count(*) FROM cmap_iterate();
EXECUTE total;
RESET ROLE;
DEALLOCATE total;
REVOKE EXECUTE ON FUNCTION cmap_iterate(text) FROM regress_cmap_scan_reader;
DROP ROLE regress_cmap_scan_none;
DROP ROLE regress_cmap_scan_reader;

-- a cursor over the scan keeps its version while the map changes
BEGIN;
DECLARE c CURSOR FOR SELECT key, value FROM cmap_iterate('s:');
FETCH 2 FROM c;
SET LOCAL cmapext.transactional = off;
SELECT cmap_store('s:0003', 'changed'), cmap_delete('s:0004');
FETCH 2 FROM c;
CLOSE c;
SELECT key, value FROM cmap_iterate('s:000') LIMIT 4;
COMMIT;

-- no pin is left behind, also after LIMIT
SELECT key FROM cmap_iterate() LIMIT 1;
SELECT pinned_snapshots FROM cmap_stats();
