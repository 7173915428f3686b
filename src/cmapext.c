/*-------------------------------------------------------------------------
 *
 * cmapext.c
 *	  Module entry point: settings, and the PostgreSQL hooks cmapext needs.
 *
 * cmapext must be loaded through shared_preload_libraries: its maps live in
 * main shared memory, which can only be sized at server start.  When the
 * library is loaded any other way, _PG_init only defines the settings, and
 * every SQL function raises SQLSTATE 55000 (cmap_check_loaded).
 *
 * Hooks installed here:
 *	- shmem_request_hook / shmem_startup_hook: cmap_shmem.c;
 *	- ExecutorStart_hook: fixes the map version of REPEATABLE READ and
 *	  SERIALIZABLE transactions at their first query (cmap_snapshot.c);
 *	- ExecutorRun_hook / ProcessUtility_hook: track statement nesting, so
 *	  that statements nested in another share its version (cmap_snapshot.c);
 *	- set_rel_pathlist_hook: a streaming scan for cmap_iterate() in FROM
 *	  clauses (cmap_scan.c);
 *	- object_access_hook: DROP EXTENSION forgets the map (transactionally,
 *	  as a cmap_clear()); DROP DATABASE releases the database's map at
 *	  commit (cmap_commit.c);
 *	- transaction callbacks: cmap_commit.c.
 *
 * Copyright (c) 2026, cmapext developers
 * Released under the PostgreSQL License (see LICENSE).
 *
 * IDENTIFICATION
 *	  src/cmapext.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "catalog/objectaccess.h"
#include "catalog/pg_database.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "tcop/utility.h"
#include "utils/guc.h"

#include "cmapext.h"
#include "cmap_batch.h"
#include "cmap_commit.h"
#include "cmap_persist.h"
#include "cmap_reclaim.h"
#include "cmap_scan.h"
#include "cmap_shmem.h"
#include "cmap_snapshot.h"

PG_MODULE_MAGIC;

/* Settings. */
int			cmap_max_memory_kb = 64 * 1024;
int			cmap_max_databases = 16;
bool		cmap_transactional = true;
bool		cmap_persist = true;

bool		cmap_preloaded = false;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static ExecutorStart_hook_type prev_ExecutorStart = NULL;
static ExecutorRun_hook_type prev_ExecutorRun = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;
static object_access_hook_type prev_object_access_hook = NULL;

void		_PG_init(void);

static void cmap_shmem_request_hook(void);
static void cmap_shmem_startup_hook(void);
static void cmap_ExecutorStart(QueryDesc *queryDesc, int eflags);
static void cmap_ExecutorRun(QueryDesc *queryDesc, ScanDirection direction,
							 uint64 count, bool execute_once);
static void cmap_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
								bool readOnlyTree, ProcessUtilityContext context,
								ParamListInfo params, QueryEnvironment *queryEnv,
								DestReceiver *dest, QueryCompletion *qc);
static void cmap_object_access(ObjectAccessType access, Oid classId,
							   Oid objectId, int subId, void *arg);

/*
 * PostgreSQL only warns about an invalid value of an extension's setting
 * found in postgresql.conf, and uses the default instead.  For the settings
 * that size shared memory that would silently shrink the maps (and drop a
 * saved map that no longer fits), so refuse to start instead, as the server
 * does for its own settings.  Called before the setting is defined, when
 * its value is still the raw string from the configuration.
 */
static void
cmap_check_raw_setting(const char *name, int min, int max, int flags)
{
	const char *raw = GetConfigOption(name, true, false);
	const char *hintmsg = NULL;
	int			val;

	if (raw == NULL)
		return;
	if (!parse_int(raw, &val, flags, &hintmsg))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for parameter \"%s\": \"%s\"", name, raw),
				 hintmsg ? errhint("%s", _(hintmsg)) : 0));
	if (val < min || val > max)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("value \"%s\" is out of range for parameter \"%s\"", raw, name),
				 errdetail("Valid values are between %d and %d%s.", min, max,
						   (flags & GUC_UNIT_KB) ? " kB" : "")));
}

void
_PG_init(void)
{
	/*
	 * Settings that size shared memory can only be defined while the
	 * library is preloaded; loaded later (CREATE EXTENSION, LOAD), defining
	 * a PGC_POSTMASTER variable is a FATAL error.  The SQL functions then
	 * explain what is missing (cmap_check_loaded).
	 */
	if (process_shared_preload_libraries_in_progress)
	{
		cmap_check_raw_setting("cmapext.max_memory", 1024, INT_MAX / 2, GUC_UNIT_KB);
		cmap_check_raw_setting("cmapext.max_databases", 1, 1024, 0);

		DefineCustomIntVariable("cmapext.max_memory",
								"Sets the amount of shared memory that holds the maps of all databases.",
								"A commit that does not fit fails with SQLSTATE 53200.",
								&cmap_max_memory_kb,
								64 * 1024,
								1024,
								INT_MAX / 2,
								PGC_POSTMASTER,
								GUC_UNIT_KB,
								NULL, NULL, NULL);

		DefineCustomIntVariable("cmapext.max_databases",
								"Sets the maximum number of databases that can hold a map at the same time.",
								NULL,
								&cmap_max_databases,
								16,
								1,
								1024,
								PGC_POSTMASTER,
								0,
								NULL, NULL, NULL);
	}

	DefineCustomBoolVariable("cmapext.transactional",
							 "Makes map writes part of the surrounding transaction.",
							 "When off, each write is published at once as its own version and is not undone by rollback.",
							 &cmap_transactional,
							 true,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("cmapext.persist",
							 "Saves the maps at clean shutdown and restores them at start.",
							 NULL,
							 &cmap_persist,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("cmapext.custom_scan",
							 "Lets the planner stream cmap_iterate() in FROM clauses with a custom scan.",
							 "When off, cmap_iterate() runs as an ordinary set-returning function, which materialises its rows first.",
							 &cmap_custom_scan,
							 true,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	MarkGUCPrefixReserved("cmapext");

	if (!process_shared_preload_libraries_in_progress)
		return;
	cmap_preloaded = true;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = cmap_shmem_request_hook;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = cmap_shmem_startup_hook;
	prev_ExecutorStart = ExecutorStart_hook;
	ExecutorStart_hook = cmap_ExecutorStart;
	prev_ExecutorRun = ExecutorRun_hook;
	ExecutorRun_hook = cmap_ExecutorRun;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = cmap_ProcessUtility;
	prev_object_access_hook = object_access_hook;
	object_access_hook = cmap_object_access;

	cmap_commit_register_callbacks();
	cmap_reclaimer_register();
	cmap_scan_register();
}

static void
cmap_shmem_request_hook(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	cmap_shmem_request();
}

static void
cmap_shmem_startup_hook(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	cmap_shmem_startup();
	if (!IsUnderPostmaster)
		cmap_persist_startup();
}

static void
cmap_ExecutorStart(QueryDesc *queryDesc, int eflags)
{
	if (cmap_shared != NULL)
		cmap_snapshot_executor_start();
	if (prev_ExecutorStart)
		prev_ExecutorStart(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

/*
 * Statement nesting, so that reads made by statements nested in another
 * (PL/pgSQL loops and cursors, SPI) share the outer statement's version.
 */
static void
cmap_ExecutorRun(QueryDesc *queryDesc, ScanDirection direction,
				 uint64 count, bool execute_once)
{
	cmap_statement_enter();
	PG_TRY();
	{
		if (prev_ExecutorRun)
			prev_ExecutorRun(queryDesc, direction, count, execute_once);
		else
			standard_ExecutorRun(queryDesc, direction, count, execute_once);
	}
	PG_FINALLY();
	{
		cmap_statement_leave();
	}
	PG_END_TRY();
}

static void
cmap_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
					bool readOnlyTree, ProcessUtilityContext context,
					ParamListInfo params, QueryEnvironment *queryEnv,
					DestReceiver *dest, QueryCompletion *qc)
{
	/* a FETCH runs its cursor's own statement; do not wrap it */
	bool		counts = !IsA(pstmt->utilityStmt, FetchStmt);

	if (counts)
		cmap_statement_enter();
	PG_TRY();
	{
		if (prev_ProcessUtility)
			prev_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
									params, queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		if (counts)
			cmap_statement_leave();
	}
	PG_END_TRY();
}

static void
cmap_object_access(ObjectAccessType access, Oid classId, Oid objectId,
				   int subId, void *arg)
{
	if (prev_object_access_hook)
		prev_object_access_hook(access, classId, objectId, subId, arg);

	if (access != OAT_DROP || cmap_shared == NULL || subId != 0)
		return;

	if (classId == ExtensionRelationId)
	{
		char	   *name = get_extension_name(objectId);

		/* forget the map, transactionally, like a cmap_clear() at commit */
		if (name != NULL && strcmp(name, "cmapext") == 0 &&
			cmap_lookup_map(MyDatabaseId) != NULL)
			cmap_batch_clear();
	}
	else if (classId == DatabaseRelationId)
		cmap_commit_note_dropdb(objectId);
}
