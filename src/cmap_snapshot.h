/*-------------------------------------------------------------------------
 *
 * cmap_snapshot.h
 *	  Publishing versions and pinning them: which version a statement or a
 *	  transaction reads, and the lock-free protocol that keeps it alive.
 *
 * Copyright (c) 2026, cmapext developers
 * Released under the PostgreSQL License (see LICENSE).
 *
 * IDENTIFICATION
 *	  src/cmap_snapshot.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CMAP_SNAPSHOT_H
#define CMAP_SNAPSHOT_H

#include "cmap_shmem.h"
#include "cmap_tree.h"

/* A pinned version, as this backend sees it. */
typedef struct CmapView
{
	uint64		word;			/* published word that was pinned */
	uint64		version;
	CmapTree	tree;
	int			pin;			/* index in the local pin table */
} CmapView;

extern void cmap_snapshot_attach(void);

/* The version the current statement (or transaction) reads; pins it. */
extern const CmapView *cmap_view_get(void);
extern const CmapView *cmap_view_latest(void);

/* Extra references for iterators that may outlive a single call. */
extern int	cmap_view_ref(const CmapView *view);
extern void cmap_view_unref(int ref);

/* Release every pin this backend holds (end of transaction). */
extern void cmap_views_release_all(void);
extern void cmap_views_subxact_abort(SubTransactionId subid);

/* Publishing (caller holds map->writer_lock and filled the header). */
extern void cmap_publish(CmapMap *map, int hdr_slot);

/* The published word of a map (for committers holding writer_lock). */
static inline uint64
cmap_current_word(CmapMap *map)
{
	return pg_atomic_read_u64(&map->current);
}

/* Statement nesting, maintained by the executor and utility hooks. */
extern void cmap_statement_enter(void);
extern void cmap_statement_leave(void);

/* ExecutorStart hook helper: pin the transaction snapshot early under RR. */
extern void cmap_snapshot_executor_start(void);

/* Tell the reclaimer there may be work (the _maybe form only if a lot). */
extern void cmap_reclaim_request(void);
extern void cmap_reclaim_maybe(CmapMap *map);

#endif							/* CMAP_SNAPSHOT_H */
