/*-------------------------------------------------------------------------
 *
 * cmapext.h
 *	  Module-wide declarations of cmapext: settings and entry points that
 *	  tie the files together.  Each subsystem has its own header; this one
 *	  only carries what every file may need.
 *
 * Copyright (c) 2026, cmapext developers
 * Released under the PostgreSQL License (see LICENSE).
 *
 * IDENTIFICATION
 *	  src/cmapext.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CMAPEXT_H
#define CMAPEXT_H

/* Settings (cmapext.c). */
extern PGDLLIMPORT int cmap_max_memory_kb;		/* cmapext.max_memory */
extern PGDLLIMPORT int cmap_max_databases;		/* cmapext.max_databases */
extern PGDLLIMPORT bool cmap_transactional;		/* cmapext.transactional */
extern PGDLLIMPORT bool cmap_persist;			/* cmapext.persist */

/* True once _PG_init ran during shared_preload_libraries processing. */
extern PGDLLIMPORT bool cmap_preloaded;

/* Reclaimer background worker entry point (cmap_reclaim.c). */
extern PGDLLEXPORT void cmap_reclaimer_main(Datum main_arg);

#endif							/* CMAPEXT_H */
