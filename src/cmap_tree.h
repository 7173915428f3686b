/*-------------------------------------------------------------------------
 *
 * cmap_tree.h
 *	  The persistent (path-copying) B+tree that stores one version of a map.
 *
 * A version is a root node; every node reachable from a published root is
 * immutable.  A commit builds the next version by copying the nodes on the
 * path to each changed key (nodes it created itself are edited in place) and
 * retires the nodes it replaced; see cmap_tree.c for the algorithms and
 * cmap_reclaim.c for when retired memory is freed.
 *
 * Readers need no lock: they only follow pointers from a root they pinned.
 * Writers (CmapWriter) are private to one committer until it publishes.
 *
 * Copyright (c) 2026, cmapext developers
 * Released under the PostgreSQL License (see LICENSE).
 *
 * IDENTIFICATION
 *	  src/cmap_tree.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CMAP_TREE_H
#define CMAP_TREE_H

#include "common/hashfn.h"

#include "cmap_shmem.h"

/* Limits users see. */
#define CMAP_MAX_KEY_LEN		1024	/* bytes */
#define CMAP_INLINE_VALUE_MAX	512 /* longer values live out of line */
#define CMAP_MAX_VALUE_LEN		((Size) MaxAllocHugeSize - 64)

/* Tree height is bounded by memory (fanout >= 2); this is far above it. */
#define CMAP_MAX_HEIGHT			40

/*
 * Common prefix of everything that can be retired: nodes and blobs.  The
 * first and fourth fields are written once at creation; death, next and
 * rflags are written later by the committer that retires the object and by
 * the reclaimer, and readers never look at them, so writing them while a
 * reader reads the rest of the object is safe.
 */
typedef struct CmapRetired
{
	uint64		birth;			/* version that made it reachable */
	uint64		death;			/* first version that cannot reach it */
	dsa_pointer next;			/* retire list / node pool link */
	uint16		kind;			/* CMAP_KIND_* */
	uint16		rflags;			/* CMAP_RETIRE_* */
} CmapRetired;

#define CMAP_KIND_NODE			1
#define CMAP_KIND_BLOB			2

#define CMAP_RETIRE_SUBTREE		0x0001	/* node retired with its whole subtree */

/* A tree node (slotted page of CMAP_NODE_SIZE bytes). */
typedef struct CmapNode
{
	CmapRetired r;
	uint16		level;			/* 0 = leaf */
	uint16		nitems;
	uint16		upper;			/* start of the item area (grows down) */
	uint16		frag;			/* bytes of holes inside the item area */
	uint16		offsets[FLEXIBLE_ARRAY_MEMBER]; /* item offsets, key order */
} CmapNode;

#define CMAP_NODE_HDRSZ		offsetof(CmapNode, offsets)

/* An out-of-line value. */
typedef struct CmapBlob
{
	CmapRetired r;
	uint32		pad;
	uint64		len;			/* bytes of data */
	char		data[FLEXIBLE_ARRAY_MEMBER];
} CmapBlob;

#define CMAP_BLOB_HDRSZ		offsetof(CmapBlob, data)

/* One version's tree, as a reader or writer sees it. */
typedef struct CmapTree
{
	dsa_pointer root;
	int			height;
	uint64		count;
} CmapTree;

/* The tree of a version, as its header records it. */
static inline CmapTree
cmap_header_tree(const CmapHeader *h)
{
	CmapTree	tree;

	tree.root = h->root;
	tree.height = h->height;
	tree.count = h->count;
	return tree;
}

/* A leaf entry as returned to readers: pointers into shared memory. */
typedef struct CmapItem
{
	const char *key;
	int			keylen;
	const char *value;
	Size		vallen;
	uint64		version;
} CmapItem;

/* Forward cursor over one version. */
typedef struct CmapCursor
{
	int			height;
	int			depth;			/* valid levels in stack */
	bool		valid;
	struct
	{
		dsa_pointer node;
		int			idx;
	}			stack[CMAP_MAX_HEIGHT];
} CmapCursor;

/* Slot of a key in its map's delete-stamp table (CMAP_DELTAB_SIZE). */
static inline int
cmap_deltab_slot(const char *key, int keylen)
{
	return hash_bytes((const unsigned char *) key, keylen) & (CMAP_DELTAB_SIZE - 1);
}

/* Reading. */
extern bool cmap_tree_lookup(const CmapTree *tree, const char *key, int keylen,
							 CmapItem *item);
extern void cmap_cursor_seek(CmapCursor *cur, const CmapTree *tree,
							 const char *key, int keylen);
extern bool cmap_cursor_get(const CmapCursor *cur, CmapItem *item);
extern void cmap_cursor_next(CmapCursor *cur);

/*
 * Writing.  A CmapWriter turns a base version plus sorted operations into a
 * new version.  Where its fresh nodes come from is decided by its caller:
 * at COMMIT only from a reservation (must not fail), at PRE_COMMIT from the
 * pool with ERROR allowed (see cmap_commit.c).
 */
typedef struct CmapWriter
{
	int			map_index;
	uint64		version;		/* version being built: fresh nodes carry it */
	CmapTree	tree;
	int64		nodes;			/* nodes reachable from tree.root */
	int64		blob_bytes;		/* out-of-line value bytes reachable */
	bool		changed;		/* did any operation change anything? */
	bool		may_fail;		/* true outside COMMIT: node shortage may ERROR */
	uint64		reserved;		/* nodes still available from the reservation */
	uint64		used;			/* nodes taken so far */
	uint64		emergency;		/* nodes taken beyond the reservation */
	dsa_pointer local_free;		/* fresh nodes freed again, for reuse */
	MemoryContext cxt;			/* where taken[] lives (may_fail only) */
	dsa_pointer *taken;			/* may_fail only: every node taken, for discard */
	int			ntaken;
	int			maxtaken;

	/* Retired objects, appended to the map's list when published. */
	dsa_pointer retire_head;
	dsa_pointer retire_tail;
	uint64		retired_bytes;
	uint64		retired_items;

	/* Finger: the path of the previous operation, for sorted batches. */
	bool		finger_valid;
	struct
	{
		dsa_pointer node;
		int			idx;
	}			path[CMAP_MAX_HEIGHT];
} CmapWriter;

extern void cmap_writer_init(CmapWriter *w, int map_index, uint64 version,
							 const CmapTree *base, uint64 base_nodes,
							 uint64 base_blob_bytes);
extern void cmap_writer_put(CmapWriter *w, const char *key, int keylen,
							const char *value, Size vallen, dsa_pointer blob);
extern void cmap_writer_put_version(CmapWriter *w, const char *key, int keylen,
									const char *value, Size vallen,
									dsa_pointer blob, uint64 entry_version);
extern bool cmap_writer_delete(CmapWriter *w, const char *key, int keylen);
extern void cmap_writer_clear(CmapWriter *w);
extern void cmap_writer_discard(CmapWriter *w);
extern void cmap_writer_finish(CmapWriter *w);
extern uint64 cmap_writer_bound(uint64 nops, int height);

/* Retiring (used by the writer and by map resets). */
extern void cmap_retire_append(CmapWriter *w, dsa_pointer obj, uint64 bytes,
							   uint16 rflags);
extern void cmap_node_foreach_ref(dsa_pointer node,
								  void (*fn) (dsa_pointer ref, void *arg),
								  void *arg);

#endif							/* CMAP_TREE_H */
