/*-------------------------------------------------------------------------
 *
 * cmap_batch.h
 *	  The backend-local batch of a transaction's map writes: what commit
 *	  publishes, what rollback discards, what the transaction's own reads
 *	  see on top of its snapshot.
 *
 * Copyright (c) 2026, cmapext developers
 * Released under the PostgreSQL License (see LICENSE).
 *
 * IDENTIFICATION
 *	  src/cmap_batch.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CMAP_BATCH_H
#define CMAP_BATCH_H

#include "cmap_snapshot.h"

/* What a pending entry does at commit. */
#define CMAP_OP_NONE	0		/* removed by a rollback to savepoint */
#define CMAP_OP_PUT		1		/* store value */
#define CMAP_OP_DEL		2		/* delete the key */
#define CMAP_OP_INCR	3		/* add delta to the value current at commit */
#define CMAP_OP_CHECK	4		/* no write: only validate the dependency */

/*
 * Dependency flags: the entry's op was decided on the value the transaction
 * saw, so commit must check that nobody changed the key since (see
 * cmap_commit.c).
 */
#define CMAP_DEP_NONE		0
#define CMAP_DEP_VERSION	1	/* dep_version is the entry version seen */
#define CMAP_DEP_ABSENT		2	/* the key was absent */

/*
 * Pending increments add up in a wider type where the platform has one, so
 * that deltas that cancel out never overflow before the value does.
 */
#ifdef HAVE_INT128
typedef int128 CmapDelta;
#else
typedef int64 CmapDelta;
#endif

/* The mutable part of an entry; an undo record saves a copy of it. */
typedef struct CmapEntryState
{
	uint8		op;				/* CMAP_OP_* */
	uint8		dep;			/* CMAP_DEP_* */
	bool		val_palloced;	/* value buffer was palloc'd separately */
	SubTransactionId subid;		/* subtransaction of the last change */
	uint32		vallen;
	uint32		valcap;
	char	   *value;			/* PUT: the value */
	CmapDelta	delta;			/* INCR: sum of increments */
	uint64		dep_version;	/* CMAP_DEP_VERSION: version seen */
	uint64		dep_view;		/* view version the dependency was read in */
	CommandId	mirror_cid;		/* command of a cmap_mirror store, or Invalid */
} CmapEntryState;

typedef struct CmapEntry
{
	uint32		hash;
	uint16		keylen;
	bool		counted;		/* base_exists is valid for count_version */
	bool		base_exists;	/* key exists in the count_version snapshot */
	const char *key;			/* points into this allocation */
	dsa_pointer blob;			/* out-of-line value made at PRE_COMMIT */
	CmapEntryState st;
} CmapEntry;

/* Public batch state (the rest is private to cmap_batch.c). */
extern bool cmap_batch_active(void);
extern bool cmap_batch_cleared(void);
extern bool cmap_batch_has_deps(void);

extern CmapEntry *cmap_batch_lookup(const char *key, int keylen);
extern CmapEntry *cmap_batch_entry(const char *key, int keylen);
extern void cmap_batch_set_put(CmapEntry *e, const char *value, Size vallen);
extern void cmap_batch_set_delete(CmapEntry *e);
extern void cmap_batch_set_incr(CmapEntry *e, CmapDelta delta);
extern void cmap_batch_set_dep(CmapEntry *e, uint8 dep, uint64 version, uint64 view);
extern void cmap_batch_clear(void);

/* Commit support. */
extern CmapEntry **cmap_batch_sorted(int *n);
extern void cmap_batch_reset(void);
extern void cmap_batch_subxact_abort(SubTransactionId subid);
extern void cmap_batch_subxact_start(void);

/* Reads through the batch (read-your-writes). */
typedef struct CmapValue
{
	bool		found;
	const char *data;
	Size		len;
	bool		own;			/* written by this transaction (no version yet) */
	uint64		version;		/* entry version when !own */
	/* what the result depends on in the snapshot (for validation) */
	bool		base_dep;		/* the snapshot's entry matters */
	bool		base_found;		/* ... and it existed */
	uint64		base_version;	/* ... with this version */
} CmapValue;

extern void cmap_read(const CmapView *view, const char *key, int keylen,
					  CmapValue *val);
extern int64 cmap_read_count(const CmapView *view);
extern CmapEntry **cmap_batch_snapshot(const char *prefix, int prefixlen, int *n);

/* Integer helpers shared by cmap_increment and the commit step. */
extern int64 cmap_parse_int8(const char *data, Size len, const char *key, int keylen);
extern int64 cmap_add_int8(int64 a, int64 b, const char *key, int keylen);
extern int64 cmap_apply_delta(int64 base, CmapDelta delta, const char *key, int keylen);
extern CmapDelta cmap_add_delta(CmapDelta a, int64 b, const char *key, int keylen);

#endif							/* CMAP_BATCH_H */
