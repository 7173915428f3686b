/*-------------------------------------------------------------------------
 *
 * cmap_persist.h
 *	  Saving the maps at clean shutdown and restoring them at start.
 *
 * Copyright (c) 2026, cmapext developers
 * Released under the PostgreSQL License (see LICENSE).
 *
 * IDENTIFICATION
 *	  src/cmap_persist.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CMAP_PERSIST_H
#define CMAP_PERSIST_H

/* Called in the postmaster after shared memory is initialised. */
extern void cmap_persist_startup(void);

#endif							/* CMAP_PERSIST_H */
