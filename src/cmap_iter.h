/*-------------------------------------------------------------------------
 *
 * cmap_iter.h
 *	  Iterating the map as a transaction sees it: one pinned version merged
 *	  with the transaction's own pending writes, in key order.
 *
 * Used by the cmap_iterate() set-returning function and by the streaming
 * custom scan that replaces it in FROM clauses (cmap_scan.c).
 *
 * Copyright (c) 2026, cmapext developers
 * Released under the PostgreSQL License (see LICENSE).
 *
 * IDENTIFICATION
 *	  src/cmap_iter.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CMAP_ITER_H
#define CMAP_ITER_H

#include "cmap_batch.h"

typedef struct CmapIter
{
	CmapTree	tree;
	CmapCursor	cur;
	bool		use_tree;		/* false when the transaction cleared the map */
	char	   *prefix;			/* NULL: everything */
	int			prefixlen;
	CmapEntry **pending;		/* own writes matching the prefix, sorted */
	int			npending;
	int			pi;
	int			ref;			/* our reference on the view's pin, or -1 */
} CmapIter;

/* Start iterating (memory for the iterator comes from CurrentMemoryContext). */
extern void cmap_iter_begin(CmapIter *it, const char *prefix, int prefixlen);

/* Columns of a row, for cmap_iter_next's mask. */
#define CMAP_COL_KEY		0x01
#define CMAP_COL_VALUE		0x02
#define CMAP_COL_VERSION	0x04
#define CMAP_COL_ALL		0x07

/*
 * Produce the next row as (key text, value text, version bigint) datums,
 * allocated in rowcxt.  Columns not in mask are returned as NULL without
 * being built.  Returns false at the end.
 */
extern bool cmap_iter_next(CmapIter *it, MemoryContext rowcxt, int mask,
						   Datum *values, bool *nulls);

/* Release the pin; safe to call more than once. */
extern void cmap_iter_end(CmapIter *it);

#endif							/* CMAP_ITER_H */
