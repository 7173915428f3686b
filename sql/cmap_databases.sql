--
-- cmap_databases: one map per database.
--
-- Two databases never see each other's keys and have independent versions;
-- a new database's map starts empty at version 0; DROP DATABASE releases
-- the database's map slot (cmap_stats().databases goes back down once the
-- reclaimer has run); DROP EXTENSION forgets the map's contents, and a
-- rolled-back DROP EXTENSION keeps them.
--
\set VERBOSITY terse
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS cmapext;
CREATE EXTENSION cmapext;
DROP DATABASE IF EXISTS regress_cmap_other;
RESET client_min_messages;

SELECT current_database() AS main_db \gset
SELECT cmap_store('main_only', 'm'), cmap_store('same_key', 'main');
SELECT cmap_version() AS main_v \gset
SELECT databases AS dbs0 FROM cmap_stats() \gset

-- wait (at most about 10 s) until cmap_stats().databases equals target
CREATE OR REPLACE FUNCTION regress_cmap_wait_for_databases(target int) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
  n int;
BEGIN
  FOR i IN 1 .. 100 LOOP
    SELECT databases INTO n FROM cmap_stats();
    EXIT WHEN n = target;
    PERFORM pg_sleep(0.1);
  END LOOP;
  RETURN n;
END $$;

--
-- a second database
--
CREATE DATABASE regress_cmap_other;
\c regress_cmap_other
\set VERBOSITY terse
CREATE EXTENSION cmapext;
-- a new map: empty, version 0
SELECT cmap_count(), cmap_version();
SELECT count(*) FROM cmap_iterate();
SELECT cmap_load('main_only') IS NULL AS main_key_invisible,
       cmap_load('same_key') IS NULL AS same_key_absent;
SELECT cmap_store('other_only', 'o'), cmap_store('same_key', 'other');
SELECT cmap_increment('other_counter');
SELECT key, value, version FROM cmap_iterate();
SELECT cmap_version(), entries FROM cmap_stats();
SELECT databases - :dbs0 AS extra_maps FROM cmap_stats();

\c :main_db
\set VERBOSITY terse
SELECT key, value, version - :main_v AS dv FROM cmap_iterate();
SELECT cmap_load('other_only') IS NULL AS other_key_invisible,
       cmap_load('same_key') AS same_key;
SELECT cmap_version() - :main_v AS dv, entries FROM cmap_stats();
-- writes here do not show up there, and versions move independently
SELECT cmap_store('main_2', 'm2'), cmap_delete('same_key');
SELECT cmap_version() - :main_v AS dv;
SELECT databases - :dbs0 AS extra_maps FROM cmap_stats();

--
-- DROP EXTENSION forgets the contents of this database's map only
--
SELECT cmap_count();
SELECT cmap_version() AS before_drop \gset
-- a rolled-back DROP EXTENSION keeps everything
BEGIN;
DROP EXTENSION cmapext;
ROLLBACK;
SELECT key, value FROM cmap_iterate();
SELECT cmap_version() - :before_drop AS dv;
-- a committed one forgets it: one new version, numbers keep increasing
DROP EXTENSION cmapext;
CREATE EXTENSION cmapext;
SELECT cmap_count(), cmap_version() - :before_drop AS dv;
SELECT count(*) FROM cmap_iterate();
-- dropping the extension while the map is empty publishes nothing
DROP EXTENSION cmapext;
CREATE EXTENSION cmapext;
SELECT cmap_count(), cmap_version() - :before_drop AS dv;
-- writes made before a DROP EXTENSION in the same transaction are
-- forgotten too; writes after the new CREATE EXTENSION are kept
BEGIN;
SELECT cmap_store('before_drop', 'x');
DROP EXTENSION cmapext;
CREATE EXTENSION cmapext;
SELECT cmap_count();
SELECT cmap_store('after_create', 'y');
COMMIT;
SELECT key, value, version - :before_drop AS dv FROM cmap_iterate();

-- the other database's map was not touched
\c regress_cmap_other
\set VERBOSITY terse
SELECT key, value, version FROM cmap_iterate();
SELECT cmap_version();

--
-- DROP DATABASE releases the map slot
--
\c :main_db
\set VERBOSITY terse
SELECT databases - :dbs0 AS extra_maps FROM cmap_stats();
DROP DATABASE regress_cmap_other;
SELECT regress_cmap_wait_for_databases(:dbs0) - :dbs0 AS extra_maps;

-- a database created again under the same name starts from nothing;
-- this time DROP DATABASE is the first statement of a fresh session
CREATE DATABASE regress_cmap_other;
\c regress_cmap_other
\set VERBOSITY terse
CREATE EXTENSION cmapext;
SELECT cmap_count(), cmap_version();
SELECT cmap_store('again', 'a');
SELECT cmap_version(), cmap_count();
\c :main_db
DROP DATABASE regress_cmap_other;
\set VERBOSITY terse
SELECT regress_cmap_wait_for_databases(:dbs0) - :dbs0 AS extra_maps;
-- this database's map is still here and working
SELECT key, value FROM cmap_iterate();
SELECT cmap_clear();
DROP FUNCTION regress_cmap_wait_for_databases(int);
