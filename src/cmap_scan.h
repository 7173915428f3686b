/*-------------------------------------------------------------------------
 *
 * cmap_scan.h
 *	  A streaming custom scan for cmap_iterate() in FROM clauses.
 *
 * Copyright (c) 2026, cmapext developers
 * Released under the PostgreSQL License (see LICENSE).
 *
 * IDENTIFICATION
 *	  src/cmap_scan.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CMAP_SCAN_H
#define CMAP_SCAN_H

/* cmapext.custom_scan: offer the streaming scan to the planner. */
extern PGDLLIMPORT bool cmap_custom_scan;

extern void cmap_scan_register(void);

#endif							/* CMAP_SCAN_H */
