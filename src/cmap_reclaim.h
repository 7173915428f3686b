/*-------------------------------------------------------------------------
 *
 * cmap_reclaim.h
 *	  Freeing the memory of versions that no process pins any more.
 *
 * Copyright (c) 2026, cmapext developers
 * Released under the PostgreSQL License (see LICENSE).
 *
 * IDENTIFICATION
 *	  src/cmap_reclaim.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CMAP_RECLAIM_H
#define CMAP_RECLAIM_H

#include "cmap_shmem.h"

/* One reclamation pass over every map; ERROR is allowed where it runs. */
extern void cmap_reclaim_now(void);

/* Register the reclaimer background worker (from _PG_init). */
extern void cmap_reclaimer_register(void);

#endif							/* CMAP_RECLAIM_H */
