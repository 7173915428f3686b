/*-------------------------------------------------------------------------
 *
 * cmap_persist.c
 *	  Saving the maps at clean shutdown and restoring them at start.
 *
 * Copyright (c) 2026, cmapext developers
 * Released under the PostgreSQL License (see LICENSE).
 *
 * IDENTIFICATION
 *	  src/cmap_persist.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "cmap_persist.h"

void
cmap_persist_startup(void)
{
}
