/*-------------------------------------------------------------------------
 *
 * cmap_commit.h
 *	  Turning a transaction's batch into one published version at commit,
 *	  and single-write commits for immediate mode.
 *
 * Copyright (c) 2026, cmapext developers
 * Released under the PostgreSQL License (see LICENSE).
 *
 * IDENTIFICATION
 *	  src/cmap_commit.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CMAP_COMMIT_H
#define CMAP_COMMIT_H

#include "cmap_batch.h"

/* Batches with at most this many entries apply inside the COMMIT step. */
#define CMAP_SMALL_BATCH	64

/* Lock tag fields of the conditional-commit lock (shows in pg_locks as advisory). */
#define CMAP_COND_LOCK_KEY		0x636d6170	/* 'cmap' */
#define CMAP_COND_LOCK_FIELD	3

extern void cmap_commit_register_callbacks(void);
extern void cmap_cond_lock(CmapMap *map);

/* Publish a built version (caller holds map->writer_lock). */
extern bool cmap_commit_publish(CmapMap *map, CmapWriter *w, int hdr_slot);

/* Remember that a database is being dropped (object access hook). */
extern void cmap_commit_note_dropdb(Oid dboid);

/*
 * Immediate mode: publish one write at once, as its own version.  The
 * conditional forms decide against the latest version while holding the
 * writer lock, so they are atomic like their sync.Map namesakes.
 */
typedef enum CmapImmOp
{
	CMAP_IMM_STORE,
	CMAP_IMM_DELETE,
	CMAP_IMM_SWAP,
	CMAP_IMM_LOAD_OR_STORE,
	CMAP_IMM_CAS,
	CMAP_IMM_CAD,
	CMAP_IMM_INCREMENT,
	CMAP_IMM_CLEAR
} CmapImmOp;

typedef struct CmapImmResult
{
	bool		found;			/* key existed before */
	char	   *old;			/* previous value (palloc'd) if found */
	Size		oldlen;
	bool		applied;		/* something was written */
	int64		number;			/* increment result / cleared count */
} CmapImmResult;

extern void cmap_immediate(CmapImmOp op, const char *key, int keylen,
						   const char *value, Size vallen,
						   const char *expected, Size explen,
						   int64 delta, CmapImmResult *res);

#endif							/* CMAP_COMMIT_H */
