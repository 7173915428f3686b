/*-------------------------------------------------------------------------
 *
 * cmap_shmem.h
 *	  Shared-memory layout of cmapext: the control block, the per-database
 *	  map table, the version-header pool, the per-process pin slots, the
 *	  node pool and the in-place DSA area that holds every tree node and
 *	  out-of-line value.
 *
 * Everything here lives in PostgreSQL's main shared memory, created by the
 * postmaster in the shmem_startup_hook.  Because main shared memory is
 * mapped at the same address in every process, plain pointers into it are
 * valid everywhere; memory inside the DSA area is always referred to by
 * dsa_pointer and converted with cmap_addr().
 *
 * Locking rules for the state declared here (details at each field):
 *	- CmapShared.lock (LWLock, "cmapext" tranche) guards the map table:
 *	  binding a map slot to a database and unbinding it.
 *	- CmapMap.writer_lock guards everything a commit changes in one map:
 *	  publishing a new version, the map's retire list and its statistics.
 *	- CmapShared.pool_lock (spinlock) guards the node pool counters and its
 *	  free list; it is only ever held for a few instructions.
 *	- CmapShared.hdr_lock (spinlock) guards the header pool free list.
 *	- CmapMap.current and CmapProcSlot.pins are lock-free atomics; their
 *	  memory-ordering protocol is described in cmap_snapshot.c.
 *
 * Copyright (c) 2026, cmapext developers
 * Released under the PostgreSQL License (see LICENSE).
 *
 * IDENTIFICATION
 *	  src/cmap_shmem.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CMAP_SHMEM_H
#define CMAP_SHMEM_H

#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/spin.h"
#include "utils/dsa.h"
#include "utils/timestamp.h"

/* Name of the LWLock tranche; it is what pg_stat_activity shows. */
#define CMAP_TRANCHE_NAME			"cmapext"

/* Size of a tree node; one DSA size class, recycled through our own pool. */
#define CMAP_NODE_SIZE				4096

/* Upper bound on distinct versions one process can pin at the same time. */
#define CMAP_MAX_PINS_PER_PROC		15

/*
 * The published word of a map: (version << CMAP_SLOT_BITS) | header slot.
 * Header slot 0 is never used, so a published word is never 0 and 0 can mean
 * "no pin" in a pin slot.
 */
#define CMAP_SLOT_BITS				16
#define CMAP_MAX_HEADERS			((1 << CMAP_SLOT_BITS) - 1)
#define CMAP_WORD(ver, slot)		(((uint64) (ver) << CMAP_SLOT_BITS) | (uint64) (slot))
#define CMAP_WORD_VERSION(w)		((uint64) (w) >> CMAP_SLOT_BITS)
#define CMAP_WORD_SLOT(w)			((int) ((w) & ((1 << CMAP_SLOT_BITS) - 1)))
#define CMAP_MAX_VERSION			((UINT64CONST(1) << (64 - CMAP_SLOT_BITS)) - 1)

/*
 * A version header: the root of one published version of one map.  A header
 * is filled in by the committer while it is private, then published through
 * CmapMap.current; from then on it is immutable until no process pins it and
 * it is no longer current, when the reclaimer returns it to the pool.
 */
typedef struct CmapHeader
{
	uint64		version;		/* version number of this snapshot */
	dsa_pointer root;			/* root node, InvalidDsaPointer if empty */
	uint64		count;			/* number of entries */
	uint64		nodes;			/* tree nodes reachable from root */
	uint64		blob_bytes;		/* bytes of out-of-line values reachable */
	uint32		height;			/* levels; 0 when empty */
	int32		map_index;		/* map this header belongs to */
	TimestampTz commit_time;	/* when it was published */
	/* pool bookkeeping: protected by hdr_lock, never read by readers */
	int32		state;			/* CMAP_HDR_* */
	int32		next_free;		/* free-list link */
} CmapHeader;

#define CMAP_HDR_FREE		0	/* on the free list */
#define CMAP_HDR_RESERVED	1	/* owned by a committer, not yet published */
#define CMAP_HDR_PUBLISHED	2	/* published (current or superseded) */

/*
 * Per-process pin slot, indexed by pgprocno.  Only the owning process writes
 * it; the reclaimer reads it.  One slot fills exactly one cache line so that
 * readers never write a line anybody else writes.
 */
typedef struct CmapProcSlot
{
	pg_atomic_uint64 pins[CMAP_MAX_PINS_PER_PROC];	/* published words, 0 = free */
	uint64		unused;			/* pads the slot to 128 bytes */
} CmapProcSlot;

/*
 * Per-process commit-window state, indexed by pgprocno; see cmap_commit.c
 * for the protocol.  Written only by its owner; read by committers of the
 * same map.  The key sets are 512-bit Bloom filters: false positives only
 * make a committer wait a little longer, never lose a conflict.
 */
#define CMAP_BLOOM_WORDS	8

typedef struct CmapProcWindow
{
	int32		map_index;		/* map whose window we hold, or -1 */
	int32		state;			/* CMAP_WIN_* */
	bool		exclusive;		/* holds the map's exclusive window */
	uint64		wbloom[CMAP_BLOOM_WORDS];	/* keys this commit writes */
	uint64		pbloom[CMAP_BLOOM_WORDS];	/* keys this commit protects */
} CmapProcWindow;

#define CMAP_WIN_NONE		0
#define CMAP_WIN_OPEN		1	/* between PRE_COMMIT and COMMIT */
#define CMAP_WIN_PROTECT	2	/* open, and protecting the keys in pbloom */

/*
 * Absence cannot be checked by an entry version: a key that was absent, then
 * stored, then deleted again is absent again.  So every delete stamps its
 * version into a slot chosen by the key's hash, and a decision that saw a
 * key absent is valid at commit only if the key is still absent and its
 * slot was not stamped since.  Another key of the same slot deleted
 * meanwhile gives a false conflict (40001), never a missed one.
 */
#define CMAP_DELTAB_SIZE	8192

/* Map states (CmapMap.state). */
#define CMAP_MAP_FREE		0	/* not bound to a database */
#define CMAP_MAP_ACTIVE		1	/* bound to dboid */
#define CMAP_MAP_DROPPED	2	/* database dropped; waiting for reclamation */

/*
 * One map: the state of one database's key/value map.  The published word
 * sits alone on its cache line: readers load it on every pin, writers store
 * it once per commit, and nothing else should share that line.
 */
typedef struct CmapMap
{
	pg_atomic_uint64 current;	/* published word; see cmap_snapshot.c */
	char		pad1[PG_CACHE_LINE_SIZE - sizeof(pg_atomic_uint64)];

	/* Binding: protected by CmapShared.lock; read without it by its users. */
	Oid			dboid;
	int32		state;			/* CMAP_MAP_* */
	int32		index;			/* position in the map table */
	LWLock	   *writer_lock;	/* serialises commits of this map */

	/* Protected by writer_lock. */
	dsa_pointer retire_head;	/* retired nodes/blobs, oldest first */
	dsa_pointer retire_tail;
	uint64		retired_bytes;	/* bytes on the retire list */
	uint64		retired_new;	/* of those, retired since the last pass */
	uint64		retired_items;	/* entries on the retire list */
	int32		superseded_head;	/* published headers no longer current */

	/*
	 * Retired objects a reclamation pass found still pinned, kept apart so
	 * that later passes need not re-check them while the pins that matter
	 * (versions older than kept_max_death) stay the same.  Only reclamation
	 * touches these (under CmapShared.reclaim_lock).
	 */
	dsa_pointer kept_head;
	dsa_pointer kept_tail;
	uint64		kept_max_death;
	uint64		kept_sig;

	/* Hints read without a lock (racy reads are fine; see users). */
	pg_atomic_uint32 height_hint;	/* height of the current version */

	/* Commit windows (cmap_commit.c): protected by win_lock. */
	slock_t		win_lock;
	int32		windows_open;	/* committers between PRE_COMMIT and COMMIT */
	int32		excl_owner;		/* pgprocno holding the exclusive window, or -1 */
	int32		excl_waiters;	/* committers waiting for exclusivity */
	TimestampTz excl_wait_since;	/* when the oldest of them began waiting */
	pg_atomic_uint32 nprotectors;	/* windows in state CMAP_WIN_PROTECT */
	ConditionVariable win_cv;	/* signalled whenever a window closes */

	/* Statistics; atomics so readers need no lock. */
	pg_atomic_uint64 commits;	/* versions published */
	pg_atomic_uint64 reclaimed_bytes;	/* bytes freed by reclamation */

	/*
	 * Delete stamps (see CMAP_DELTAB_SIZE): written by whoever builds a
	 * version (at most one at a time), read racily by validation, which only
	 * cares about its own, protected, key.
	 */
	uint64		last_clear;		/* version of the last cmap_clear() */
	uint64		deltab[CMAP_DELTAB_SIZE];
} CmapMap;

/*
 * The control block.  Followed in memory by the map table, the pin slots,
 * the window table, the header pool and finally the DSA area.
 */
typedef struct CmapShared
{
	LWLock	   *lock;			/* map table (binding/unbinding maps) */
	LWLock	   *reclaim_lock;	/* serialises reclamation passes */

	int			max_maps;		/* entries in the map table */
	int			nprocs;			/* pin slots (one per PGPROC) */
	int			pins_per_proc;	/* usable pins per slot */
	int			nheaders;		/* header pool size, including unused slot 0 */
	size_t		dsa_size;		/* bytes given to the DSA area */
	void	   *dsa_place;		/* start of the in-place DSA area */

	CmapMap    *maps;
	CmapProcSlot *slots;
	CmapProcWindow *windows;
	CmapHeader *headers;

	/* Node pool: protected by pool_lock. */
	slock_t		pool_lock;
	dsa_pointer pool_head;		/* free nodes, linked through CmapRetired.next */
	uint64		pool_nfree;		/* nodes on the free list */
	uint64		pool_nreserved; /* of those, promised to committers */

	/* Header pool: protected by hdr_lock. */
	slock_t		hdr_lock;
	int32		hdr_free_head;
	int32		hdr_nfree;

	/* Memory accounting (bytes obtained from the DSA area). */
	pg_atomic_uint64 nodes_allocated;	/* nodes obtained from DSA, pool included */
	pg_atomic_uint64 blob_bytes;	/* bytes of live out-of-line values */

	/* Reclamation statistics and wake-up. */
	pg_atomic_uint64 reclaimed_bytes;
	pg_atomic_uint64 reclaim_runs;
	pg_atomic_uint32 reclaim_requested;
	Latch	   *reclaimer_latch;	/* set by the reclaimer worker; may be NULL */
	int			reclaimer_pid;
} CmapShared;

/* Set in every process once shared memory is initialised; NULL if not preloaded. */
extern PGDLLIMPORT CmapShared *cmap_shared;

/* Backend-local: this process's DSA attachment and map (after cmap_attach). */
extern PGDLLIMPORT dsa_area *cmap_area;
extern PGDLLIMPORT CmapMap *cmap_my_map;
extern PGDLLIMPORT int cmap_my_procno;

/*
 * Convert a dsa_pointer into a local address.  The area is a single in-place
 * segment (its size limit forbids extra DSM segments), so a dsa_pointer is a
 * plain byte offset from the start of the area and conversion is arithmetic
 * that cannot fail.  The commit path relies on that.
 */
static inline void *
cmap_addr(dsa_pointer dp)
{
	Assert(DsaPointerIsValid(dp));
	Assert((size_t) dp < cmap_shared->dsa_size);
	return (char *) cmap_shared->dsa_place + dp;
}

/* Setup, called from _PG_init and the shmem hooks. */
extern void cmap_shmem_request(void);
extern void cmap_shmem_startup(void);

/* Per-backend attachment; raises 55000 if the library was not preloaded. */
extern void cmap_check_loaded(void);
extern void cmap_attach(void);
extern CmapMap *cmap_lookup_map(Oid dboid);
extern CmapMap *cmap_claim_map(Oid dboid);
extern CmapMap *cmap_map_by_index(int index);
extern void cmap_release_dropped_map(CmapMap *map);

/* Node pool (cmap_shmem.c). */
extern void cmap_pool_reserve(uint64 nnodes);
extern bool cmap_pool_try_reserve(uint64 nnodes);
extern void cmap_pool_unreserve(uint64 nnodes);
extern dsa_pointer cmap_pool_take_reserved(void);
extern dsa_pointer cmap_pool_take_emergency(void);
extern void cmap_pool_put(dsa_pointer node);
extern void cmap_pool_trim(uint64 keep);

/* Header pool (cmap_shmem.c). */
extern int	cmap_header_reserve(void);
extern void cmap_header_mark_published(int slot);
extern void cmap_header_release(int slot);

/* Out-of-line value blobs. */
extern dsa_pointer cmap_blob_alloc(const char *data, Size len, bool *oom);
extern void cmap_blob_free(dsa_pointer blob);

/* Raise the standard 53200 error when the map is full. */
extern void cmap_report_oom(const char *what, Size request) pg_attribute_noreturn();

#endif							/* CMAP_SHMEM_H */
