/* cmapext--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION cmapext" to load this file. \quit

--
-- Writers: PARALLEL UNSAFE (they change backend-local transaction state).
-- None is STRICT: a NULL key or value raises SQLSTATE 22004.
--

CREATE FUNCTION cmap_store(key text, value text)
RETURNS void
AS 'MODULE_PATHNAME', 'cmap_store'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION cmap_store(text, text) IS
'stores value under key; published at commit, undone by rollback';

CREATE FUNCTION cmap_delete(key text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'cmap_delete'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION cmap_delete(text) IS
'deletes key; returns true if the key existed in the caller''s view';

CREATE FUNCTION cmap_swap(key text, value text)
RETURNS text
AS 'MODULE_PATHNAME', 'cmap_swap'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION cmap_swap(text, text) IS
'stores value under key and returns the previous value (NULL if none)';

CREATE FUNCTION cmap_load_or_store(key text, value text)
RETURNS text
AS 'MODULE_PATHNAME', 'cmap_load_or_store'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION cmap_load_or_store(text, text) IS
'returns the value of key if present, otherwise stores value and returns it; validated at commit';

CREATE FUNCTION cmap_compare_and_swap(key text, old text, new text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'cmap_compare_and_swap'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION cmap_compare_and_swap(text, text, text) IS
'stores new under key if its value is old; validated at commit';

CREATE FUNCTION cmap_compare_and_delete(key text, old text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'cmap_compare_and_delete'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION cmap_compare_and_delete(text, text) IS
'deletes key if its value is old; validated at commit';

CREATE FUNCTION cmap_increment(key text, delta bigint DEFAULT 1)
RETURNS bigint
AS 'MODULE_PATHNAME', 'cmap_increment'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION cmap_increment(text, bigint) IS
'adds delta to the integer value of key (absent counts as 0) without losing concurrent increments; returns the value in the caller''s view';

CREATE FUNCTION cmap_clear()
RETURNS bigint
AS 'MODULE_PATHNAME', 'cmap_clear'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION cmap_clear() IS
'removes every key; returns the number of keys removed from the caller''s view';

--
-- Readers: PARALLEL RESTRICTED (a worker would pin a different version
-- than the leader).
--

CREATE FUNCTION cmap_load(key text)
RETURNS text
AS 'MODULE_PATHNAME', 'cmap_load'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION cmap_load(text) IS
'returns the value of key in the caller''s view, or NULL';

CREATE FUNCTION cmap_count()
RETURNS bigint
AS 'MODULE_PATHNAME', 'cmap_count'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION cmap_count() IS
'number of keys in the caller''s view';

CREATE FUNCTION cmap_version()
RETURNS bigint
AS 'MODULE_PATHNAME', 'cmap_version'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION cmap_version() IS
'version of the map snapshot the current statement reads';

CREATE FUNCTION cmap_iterate(prefix text DEFAULT NULL,
                             OUT key text, OUT value text, OUT version bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'cmap_iterate'
LANGUAGE C VOLATILE PARALLEL RESTRICTED ROWS 1000;

COMMENT ON FUNCTION cmap_iterate(text) IS
'every key (starting with prefix, if given) of one pinned snapshot, in byte order; version is NULL for the caller''s uncommitted writes';

CREATE FUNCTION cmap_stats(
    OUT version bigint,
    OUT entries bigint,
    OUT memory_used bigint,
    OUT memory_limit bigint,
    OUT pinned_snapshots integer,
    OUT oldest_pinned_version bigint,
    OUT committed_versions bigint,
    OUT retained_bytes bigint,
    OUT reclaimed_bytes bigint,
    OUT reclaim_runs bigint,
    OUT map_bytes bigint,
    OUT tree_height integer,
    OUT free_pool_bytes bigint,
    OUT databases integer)
RETURNS record
AS 'MODULE_PATHNAME', 'cmap_stats'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION cmap_stats() IS
'state of this database''s map (latest committed version) and of the shared memory behind all maps';

--
-- Nothing is callable by default; see the README for GRANT examples.
--
REVOKE EXECUTE ON FUNCTION
    cmap_store(text, text),
    cmap_delete(text),
    cmap_swap(text, text),
    cmap_load_or_store(text, text),
    cmap_compare_and_swap(text, text, text),
    cmap_compare_and_delete(text, text),
    cmap_increment(text, bigint),
    cmap_clear(),
    cmap_load(text),
    cmap_count(),
    cmap_version(),
    cmap_iterate(text),
    cmap_stats()
FROM PUBLIC;

--
-- Trigger: mirror a table into the map.
--
CREATE FUNCTION cmap_mirror()
RETURNS trigger
AS 'MODULE_PATHNAME', 'cmap_mirror'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION cmap_mirror() IS
'AFTER INSERT OR UPDATE OR DELETE ... FOR EACH ROW trigger: keeps prefix || key_column -> row_to_json(NEW)::text in the map; arguments: key_column [, key_prefix]';

REVOKE EXECUTE ON FUNCTION cmap_mirror() FROM PUBLIC;
