/*-------------------------------------------------------------------------
 *
 * cmap_shmem.c
 *	  Shared-memory setup of cmapext and the allocators built on it: the
 *	  per-database map table, the node pool, the version-header pool and
 *	  out-of-line value blobs.
 *
 * The postmaster creates everything in its shmem_startup_hook, including a
 * fixed-size DSA area placed inside main shared memory and sized by
 * cmapext.max_memory.  Its size limit equals its size, so DSA never creates
 * DSM segments: dsa_pointers are offsets into one mapping, conversion can
 * never fail (see cmap_addr), there is no /dev/shm limit to hit, and the
 * postmaster itself can read the maps (used to dump them at shutdown).
 *
 * Locking: see cmap_shmem.h.  In short, the map table is guarded by
 * CmapShared.lock, the node pool by pool_lock and the header pool by
 * hdr_lock; the spinlocks are held for a handful of instructions only, and
 * never while calling anything that can ERROR or allocate.
 *
 * The node pool exists so that the commit step never allocates: PRE_COMMIT
 * reserves a number of nodes (allocating them from DSA if the pool is short,
 * which may fail cleanly with 53200), and COMMIT takes nodes only from its
 * reservation (which cannot fail).  Freed nodes go back to the pool and are
 * recycled; surplus is returned to DSA by cmap_pool_trim.
 *
 * Copyright (c) 2026, cmapext developers
 * Released under the PostgreSQL License (see LICENSE).
 *
 * IDENTIFICATION
 *	  src/cmap_shmem.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/twophase.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/memutils.h"

#include "cmapext.h"
#include "cmap_reclaim.h"
#include "cmap_shmem.h"
#include "cmap_snapshot.h"
#include "cmap_tree.h"

/* Shared state, and this process's attachment to it. */
CmapShared *cmap_shared = NULL;
dsa_area   *cmap_area = NULL;
CmapMap    *cmap_my_map = NULL;
int			cmap_my_procno = -1;

/* How many nodes a reservation fetches from DSA at once when the pool is dry. */
#define CMAP_POOL_REFILL	64

static Size cmap_shmem_size(void);
static int	cmap_nprocs(void);
static void cmap_compute_layout(int nprocs, int *pins_per_proc, int *nheaders);
static bool cmap_pool_grow(uint64 nnodes);

/* Number of PGPROCs, hence pin slots; valid in shmem_request_hook and later. */
static int
cmap_nprocs(void)
{
	return MaxBackends + NUM_AUXILIARY_PROCS + max_prepared_xacts;
}

/*
 * Decide pins per process and the header pool size.  Every live header is
 * current for some map, superseded-but-pinned, or reserved by a committer
 * (one per process), so the pool can never run dry at those sizes.  The
 * header index must fit in CMAP_SLOT_BITS, which caps pins per process on
 * servers with very many connections.
 */
static void
cmap_compute_layout(int nprocs, int *pins_per_proc, int *nheaders)
{
	int			fixed = 1 + 2 * cmap_max_databases + nprocs + 16;
	int			ppp = CMAP_MAX_PINS_PER_PROC;

	if (fixed + nprocs * ppp > CMAP_MAX_HEADERS)
		ppp = Max(1, (CMAP_MAX_HEADERS - fixed) / nprocs);
	*pins_per_proc = ppp;
	*nheaders = Min(fixed + nprocs * ppp, CMAP_MAX_HEADERS);
}

static Size
cmap_shmem_size(void)
{
	int			nprocs = cmap_nprocs();
	int			ppp,
				nheaders;
	Size		size;

	cmap_compute_layout(nprocs, &ppp, &nheaders);

	size = CACHELINEALIGN(sizeof(CmapShared));
	size = add_size(size, mul_size(cmap_max_databases, CACHELINEALIGN(sizeof(CmapMap))));
	size = add_size(size, mul_size(nprocs, sizeof(CmapProcSlot)));
	size = add_size(size, mul_size(nprocs, sizeof(CmapProcWindow)));
	size = add_size(size, mul_size(nheaders, sizeof(CmapHeader)));
	size = add_size(size, (Size) cmap_max_memory_kb * 1024);
	/* slack for aligning every part to a cache line */
	size = add_size(size, 8 * PG_CACHE_LINE_SIZE);
	return size;
}

/* shmem_request_hook part: reserve our memory and LWLocks. */
void
cmap_shmem_request(void)
{
	RequestAddinShmemSpace(cmap_shmem_size());
	/* [0] map table, [1] reclamation, [2..] one writer lock per map */
	RequestNamedLWLockTranche(CMAP_TRANCHE_NAME, 2 + cmap_max_databases);
}

/*
 * shmem_startup_hook part.  Runs in the postmaster at start and after every
 * crash restart (main shared memory is then brand new, so the maps start
 * empty: that is the documented crash behaviour).
 */
void
cmap_shmem_startup(void)
{
	bool		found;
	CmapShared *ctl;
	LWLockPadded *locks;
	int			nprocs = cmap_nprocs();
	char	   *p;
	int			i;

	cmap_shared = NULL;			/* reset in case this is a restart */
	cmap_area = NULL;
	cmap_my_map = NULL;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	ctl = ShmemInitStruct("cmapext", cmap_shmem_size(), &found);
	if (!found)
	{
		dsa_area   *area;
		Size		dsa_size = (Size) cmap_max_memory_kb * 1024;

		MemSet(ctl, 0, sizeof(CmapShared));
		locks = GetNamedLWLockTranche(CMAP_TRANCHE_NAME);
		ctl->lock = &locks[0].lock;
		ctl->reclaim_lock = &locks[1].lock;
		ctl->max_maps = cmap_max_databases;
		ctl->nprocs = nprocs;
		cmap_compute_layout(nprocs, &ctl->pins_per_proc, &ctl->nheaders);

		p = (char *) ctl + CACHELINEALIGN(sizeof(CmapShared));
		ctl->maps = (CmapMap *) p;
		p += cmap_max_databases * CACHELINEALIGN(sizeof(CmapMap));
		p = (char *) CACHELINEALIGN(p);
		ctl->slots = (CmapProcSlot *) p;
		p += nprocs * sizeof(CmapProcSlot);
		ctl->windows = (CmapProcWindow *) p;
		p += nprocs * sizeof(CmapProcWindow);
		p = (char *) CACHELINEALIGN(p);
		ctl->headers = (CmapHeader *) p;
		p += ctl->nheaders * sizeof(CmapHeader);
		p = (char *) CACHELINEALIGN(p);
		ctl->dsa_place = p;
		ctl->dsa_size = dsa_size;

		for (i = 0; i < cmap_max_databases; i++)
		{
			CmapMap    *map = (CmapMap *) ((char *) ctl->maps + i * CACHELINEALIGN(sizeof(CmapMap)));

			MemSet(map, 0, sizeof(CmapMap));
			pg_atomic_init_u64(&map->current, 0);
			map->dboid = InvalidOid;
			map->state = CMAP_MAP_FREE;
			map->index = i;
			map->writer_lock = &locks[2 + i].lock;
			map->retire_head = InvalidDsaPointer;
			map->retire_tail = InvalidDsaPointer;
			map->kept_head = InvalidDsaPointer;
			map->kept_tail = InvalidDsaPointer;
			map->superseded_head = -1;
			pg_atomic_init_u32(&map->height_hint, 0);
			SpinLockInit(&map->win_lock);
			map->excl_owner = -1;
			pg_atomic_init_u32(&map->nprotectors, 0);
			ConditionVariableInit(&map->win_cv);
			pg_atomic_init_u64(&map->commits, 0);
			pg_atomic_init_u64(&map->reclaimed_bytes, 0);
		}
		for (i = 0; i < nprocs; i++)
		{
			int			j;

			for (j = 0; j < CMAP_MAX_PINS_PER_PROC; j++)
				pg_atomic_init_u64(&ctl->slots[i].pins[j], 0);
			MemSet(&ctl->windows[i], 0, sizeof(CmapProcWindow));
			ctl->windows[i].map_index = -1;
		}

		/* Header pool: slot 0 is never handed out (a word of 0 means "no pin"). */
		SpinLockInit(&ctl->hdr_lock);
		ctl->hdr_free_head = -1;
		ctl->hdr_nfree = 0;
		for (i = ctl->nheaders - 1; i >= 1; i--)
		{
			ctl->headers[i].state = CMAP_HDR_FREE;
			ctl->headers[i].next_free = ctl->hdr_free_head;
			ctl->hdr_free_head = i;
			ctl->hdr_nfree++;
		}

		SpinLockInit(&ctl->pool_lock);
		ctl->pool_head = InvalidDsaPointer;
		pg_atomic_init_u64(&ctl->nodes_allocated, 0);
		pg_atomic_init_u64(&ctl->blob_bytes, 0);
		pg_atomic_init_u64(&ctl->reclaimed_bytes, 0);
		pg_atomic_init_u64(&ctl->reclaim_runs, 0);
		pg_atomic_init_u32(&ctl->reclaim_requested, 0);
		ctl->reclaimer_latch = NULL;

		/*
		 * The DSA area lives in main shared memory.  Its size limit is its
		 * size, so it never grows into DSM segments.
		 */
		area = dsa_create_in_place(ctl->dsa_place, dsa_size,
								   locks[0].lock.tranche, NULL);
		dsa_pin(area);
		dsa_set_size_limit(area, dsa_size);
		dsa_detach(area);
	}
	LWLockRelease(AddinShmemInitLock);

	cmap_shared = ctl;
}

/*
 * Raise the standard error for calls made while the library was not loaded
 * through shared_preload_libraries.
 */
void
cmap_check_loaded(void)
{
	if (likely(cmap_shared != NULL))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cmapext must be loaded via \"shared_preload_libraries\""),
			 errhint("Add cmapext to \"shared_preload_libraries\" in postgresql.conf and restart the server.")));
}

/*
 * Attach this backend to the DSA area and to its database's map, claiming a
 * map slot the first time a database uses cmapext.  Cheap after the first
 * call.
 */
void
cmap_attach(void)
{
	MemoryContext oldcxt;

	if (likely(cmap_my_map != NULL && cmap_my_map->dboid == MyDatabaseId &&
			   cmap_my_map->state == CMAP_MAP_ACTIVE))
		return;

	cmap_check_loaded();
	if (!OidIsValid(MyDatabaseId))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cmapext can only be used in a process connected to a database")));

	if (cmap_area == NULL)
	{
		oldcxt = MemoryContextSwitchTo(TopMemoryContext);
		cmap_area = dsa_attach_in_place(cmap_shared->dsa_place, NULL);
		dsa_pin_mapping(cmap_area);
		MemoryContextSwitchTo(oldcxt);
		cmap_my_procno = MyProc->pgprocno;
		Assert(cmap_my_procno >= 0 && cmap_my_procno < cmap_shared->nprocs);
		cmap_snapshot_attach();
	}

	cmap_my_map = cmap_claim_map(MyDatabaseId);
}

/* Find the active map of a database without claiming one; NULL if none. */
CmapMap *
cmap_lookup_map(Oid dboid)
{
	int			i;

	if (cmap_shared == NULL)
		return NULL;
	for (i = 0; i < cmap_shared->max_maps; i++)
	{
		CmapMap    *map = (CmapMap *) ((char *) cmap_shared->maps +
									   i * CACHELINEALIGN(sizeof(CmapMap)));

		if (map->state == CMAP_MAP_ACTIVE && map->dboid == dboid)
			return map;
	}
	return NULL;
}

/* Map by index. */
CmapMap *
cmap_map_by_index(int index)
{
	Assert(index >= 0 && index < cmap_shared->max_maps);
	return (CmapMap *) ((char *) cmap_shared->maps +
						index * CACHELINEALIGN(sizeof(CmapMap)));
}

/*
 * Find or create the map of a database.  A new map publishes an empty
 * version 0 so that readers always find a valid published word.
 */
CmapMap *
cmap_claim_map(Oid dboid)
{
	CmapMap    *map;
	int			i;
	int			slot;

	map = cmap_lookup_map(dboid);
	if (map != NULL)
		return map;

	/* before taking the lock: reserving may run a reclamation pass */
	slot = cmap_header_reserve();

	LWLockAcquire(cmap_shared->lock, LW_EXCLUSIVE);
	/* re-check under the lock */
	for (i = 0; i < cmap_shared->max_maps; i++)
	{
		map = cmap_map_by_index(i);
		if (map->state == CMAP_MAP_ACTIVE && map->dboid == dboid)
		{
			LWLockRelease(cmap_shared->lock);
			cmap_header_release(slot);
			return map;
		}
	}
	for (i = 0; i < cmap_shared->max_maps; i++)
	{
		map = cmap_map_by_index(i);
		if (map->state == CMAP_MAP_FREE)
			break;
	}
	if (i >= cmap_shared->max_maps)
	{
		LWLockRelease(cmap_shared->lock);
		cmap_header_release(slot);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many databases use cmapext"),
				 errdetail("All %d map slots are in use.", cmap_shared->max_maps),
				 errhint("Increase \"cmapext.max_databases\" and restart the server.")));
	}

	{
		CmapHeader *hdr = &cmap_shared->headers[slot];

		LWLockAcquire(map->writer_lock, LW_EXCLUSIVE);
		hdr->version = 0;
		hdr->root = InvalidDsaPointer;
		hdr->count = 0;
		hdr->nodes = 0;
		hdr->blob_bytes = 0;
		hdr->height = 0;
		hdr->map_index = map->index;
		hdr->commit_time = GetCurrentTimestamp();
		map->retire_head = InvalidDsaPointer;
		map->retire_tail = InvalidDsaPointer;
		map->retired_bytes = 0;
		map->retired_new = 0;
		map->kept_head = map->kept_tail = InvalidDsaPointer;
		map->kept_max_death = 0;
		map->kept_sig = 0;
		map->retired_items = 0;
		map->superseded_head = -1;
		pg_atomic_write_u32(&map->height_hint, 0);
		pg_atomic_write_u64(&map->commits, 0);
		pg_atomic_write_u64(&map->reclaimed_bytes, 0);
		/* nobody can be committing into a free slot: start its windows clean */
		SpinLockAcquire(&map->win_lock);
		map->windows_open = 0;
		map->excl_owner = -1;
		map->excl_waiters = 0;
		SpinLockRelease(&map->win_lock);
		pg_atomic_write_u32(&map->nprotectors, 0);
		map->last_clear = 0;
		MemSet(map->deltab, 0, sizeof(map->deltab));
		cmap_header_mark_published(slot);
		pg_write_barrier();
		pg_atomic_write_u64(&map->current, CMAP_WORD(0, slot));
		map->dboid = dboid;
		map->state = CMAP_MAP_ACTIVE;
		LWLockRelease(map->writer_lock);
	}
	LWLockRelease(cmap_shared->lock);
	return map;
}

/*
 * Give a dropped database's map slot back once its memory has been
 * reclaimed.  Called by the reclaimer with nothing locked.
 */
void
cmap_release_dropped_map(CmapMap *map)
{
	uint64		word;

	LWLockAcquire(cmap_shared->lock, LW_EXCLUSIVE);
	LWLockAcquire(map->writer_lock, LW_EXCLUSIVE);
	if (map->state == CMAP_MAP_DROPPED &&
		!DsaPointerIsValid(map->retire_head) &&
		!DsaPointerIsValid(map->kept_head) &&
		map->superseded_head < 0)
	{
		word = pg_atomic_read_u64(&map->current);
		pg_atomic_write_u64(&map->current, 0);
		if (word != 0)
			cmap_header_release(CMAP_WORD_SLOT(word));
		map->dboid = InvalidOid;
		map->state = CMAP_MAP_FREE;
	}
	LWLockRelease(map->writer_lock);
	LWLockRelease(cmap_shared->lock);
}

/* ------------------------------------------------------------------------
 * Node pool
 * ------------------------------------------------------------------------
 */

/*
 * Allocate nnodes fresh nodes from DSA and add them to the pool's free list.
 * Returns false (having added what it could) when DSA is out of memory.
 */
static bool
cmap_pool_grow(uint64 nnodes)
{
	while (nnodes-- > 0)
	{
		dsa_pointer dp;
		CmapRetired *r;

		dp = dsa_allocate_extended(cmap_area, CMAP_NODE_SIZE, DSA_ALLOC_NO_OOM);
		if (!DsaPointerIsValid(dp))
			return false;
		pg_atomic_fetch_add_u64(&cmap_shared->nodes_allocated, 1);
		r = cmap_addr(dp);
		r->kind = CMAP_KIND_NODE;
		SpinLockAcquire(&cmap_shared->pool_lock);
		r->next = cmap_shared->pool_head;
		cmap_shared->pool_head = dp;
		cmap_shared->pool_nfree++;
		SpinLockRelease(&cmap_shared->pool_lock);
	}
	return true;
}

/*
 * Try to promise nnodes pool nodes to the caller, growing the pool from DSA
 * as needed.  Returns false, with nothing reserved, when memory is short.
 */
bool
cmap_pool_try_reserve(uint64 nnodes)
{
	for (;;)
	{
		uint64		avail;

		SpinLockAcquire(&cmap_shared->pool_lock);
		avail = cmap_shared->pool_nfree - cmap_shared->pool_nreserved;
		if (avail >= nnodes)
		{
			cmap_shared->pool_nreserved += nnodes;
			SpinLockRelease(&cmap_shared->pool_lock);
			return true;
		}
		SpinLockRelease(&cmap_shared->pool_lock);

		if (!cmap_pool_grow(Max(nnodes - avail, CMAP_POOL_REFILL)))
		{
			/* a smaller top-up may still be enough */
			SpinLockAcquire(&cmap_shared->pool_lock);
			avail = cmap_shared->pool_nfree - cmap_shared->pool_nreserved;
			if (avail >= nnodes)
			{
				cmap_shared->pool_nreserved += nnodes;
				SpinLockRelease(&cmap_shared->pool_lock);
				return true;
			}
			SpinLockRelease(&cmap_shared->pool_lock);
			return false;
		}
	}
}

/*
 * Reserve nnodes, reclaiming unpinned memory if needed; raises 53200 when
 * the map is full.  Only for places where an ERROR is allowed.
 */
void
cmap_pool_reserve(uint64 nnodes)
{
	if (cmap_pool_try_reserve(nnodes))
		return;
	cmap_reclaim_now();
	if (cmap_pool_try_reserve(nnodes))
		return;
	cmap_report_oom("tree nodes", (Size) nnodes * CMAP_NODE_SIZE);
}

/* Give back an unused part of a reservation. */
void
cmap_pool_unreserve(uint64 nnodes)
{
	if (nnodes == 0)
		return;
	SpinLockAcquire(&cmap_shared->pool_lock);
	Assert(cmap_shared->pool_nreserved >= nnodes);
	cmap_shared->pool_nreserved -= nnodes;
	SpinLockRelease(&cmap_shared->pool_lock);
}

/*
 * Take one node that the caller reserved earlier.  Cannot fail: safe to call
 * from the COMMIT step.
 */
dsa_pointer
cmap_pool_take_reserved(void)
{
	dsa_pointer dp;

	SpinLockAcquire(&cmap_shared->pool_lock);
	dp = cmap_shared->pool_head;
	Assert(DsaPointerIsValid(dp) && cmap_shared->pool_nreserved > 0);
	cmap_shared->pool_head = ((CmapRetired *) cmap_addr(dp))->next;
	cmap_shared->pool_nfree--;
	cmap_shared->pool_nreserved--;
	SpinLockRelease(&cmap_shared->pool_lock);
	return dp;
}

/*
 * Last resort for the COMMIT step when its reservation proved too small
 * (the tree grew by two levels while the commit was in flight).  Takes an
 * unreserved pool node, else allocates without raising errors; there is no
 * way left to fail cleanly after that, so running dry is a PANIC.
 */
dsa_pointer
cmap_pool_take_emergency(void)
{
	dsa_pointer dp = InvalidDsaPointer;

	SpinLockAcquire(&cmap_shared->pool_lock);
	if (cmap_shared->pool_nfree > cmap_shared->pool_nreserved)
	{
		dp = cmap_shared->pool_head;
		cmap_shared->pool_head = ((CmapRetired *) cmap_addr(dp))->next;
		cmap_shared->pool_nfree--;
	}
	SpinLockRelease(&cmap_shared->pool_lock);
	if (DsaPointerIsValid(dp))
		return dp;

	/* In a single fixed segment this returns Invalid rather than erroring. */
	dp = dsa_allocate_extended(cmap_area, CMAP_NODE_SIZE, DSA_ALLOC_NO_OOM);
	if (!DsaPointerIsValid(dp))
		elog(PANIC, "cmapext: out of shared memory while publishing a committed transaction");
	pg_atomic_fetch_add_u64(&cmap_shared->nodes_allocated, 1);
	return dp;
}

/* Return a node that nobody can reach any more to the pool. */
void
cmap_pool_put(dsa_pointer dp)
{
	CmapRetired *r = cmap_addr(dp);

	r->kind = CMAP_KIND_NODE;
	SpinLockAcquire(&cmap_shared->pool_lock);
	r->next = cmap_shared->pool_head;
	cmap_shared->pool_head = dp;
	cmap_shared->pool_nfree++;
	SpinLockRelease(&cmap_shared->pool_lock);
}

/*
 * Return surplus pool nodes to DSA so that the memory can hold values (or
 * other size classes) again, keeping at most 'keep' unreserved nodes.
 */
void
cmap_pool_trim(uint64 keep)
{
	for (;;)
	{
		dsa_pointer dp;

		SpinLockAcquire(&cmap_shared->pool_lock);
		if (cmap_shared->pool_nfree <= cmap_shared->pool_nreserved + keep)
		{
			SpinLockRelease(&cmap_shared->pool_lock);
			return;
		}
		dp = cmap_shared->pool_head;
		cmap_shared->pool_head = ((CmapRetired *) cmap_addr(dp))->next;
		cmap_shared->pool_nfree--;
		SpinLockRelease(&cmap_shared->pool_lock);

		dsa_free(cmap_area, dp);
		pg_atomic_fetch_sub_u64(&cmap_shared->nodes_allocated, 1);
	}
}

/* ------------------------------------------------------------------------
 * Header pool
 * ------------------------------------------------------------------------
 */

/*
 * Take a free header slot.  Every commit supersedes one header, and only a
 * reclamation pass returns superseded headers, so the pool runs low when
 * commits outpace the reclaimer: wake it early, and when the pool is empty
 * run a pass here (callers are always where an ERROR is allowed and hold
 * no LWLock).  The pool is sized so that pinned versions alone can never
 * exhaust it; running dry after a pass means a leak, reported as such.
 */
int
cmap_header_reserve(void)
{
	int			slot;
	int			nfree;
	int			attempt;

	for (attempt = 0; attempt < 2; attempt++)
	{
		SpinLockAcquire(&cmap_shared->hdr_lock);
		slot = cmap_shared->hdr_free_head;
		if (slot >= 0)
		{
			cmap_shared->hdr_free_head = cmap_shared->headers[slot].next_free;
			cmap_shared->hdr_nfree--;
			cmap_shared->headers[slot].state = CMAP_HDR_RESERVED;
		}
		nfree = cmap_shared->hdr_nfree;
		SpinLockRelease(&cmap_shared->hdr_lock);

		if (slot >= 0)
		{
			if (nfree < cmap_shared->nheaders / 2)
				cmap_reclaim_request();
			return slot;
		}
		cmap_reclaim_now();
	}
	ereport(ERROR,
			(errcode(ERRCODE_INTERNAL_ERROR),
			 errmsg_internal("cmapext: no free version header after reclamation")));
	return -1;					/* keep compiler quiet */
}

/* Mark a reserved header as published (called just before publishing it). */
void
cmap_header_mark_published(int slot)
{
	SpinLockAcquire(&cmap_shared->hdr_lock);
	Assert(cmap_shared->headers[slot].state == CMAP_HDR_RESERVED);
	cmap_shared->headers[slot].state = CMAP_HDR_PUBLISHED;
	SpinLockRelease(&cmap_shared->hdr_lock);
}

/* Put a header slot back on the free list. */
void
cmap_header_release(int slot)
{
	Assert(slot > 0 && slot < cmap_shared->nheaders);
	SpinLockAcquire(&cmap_shared->hdr_lock);
	Assert(cmap_shared->headers[slot].state != CMAP_HDR_FREE);
	cmap_shared->headers[slot].state = CMAP_HDR_FREE;
	cmap_shared->headers[slot].next_free = cmap_shared->hdr_free_head;
	cmap_shared->hdr_free_head = slot;
	cmap_shared->hdr_nfree++;
	SpinLockRelease(&cmap_shared->hdr_lock);
}

/* ------------------------------------------------------------------------
 * Out-of-line values
 * ------------------------------------------------------------------------
 */

/*
 * Copy a value into a new blob.  Returns InvalidDsaPointer and sets *oom when
 * the area is full; never raises an error for that.
 */
dsa_pointer
cmap_blob_alloc(const char *data, Size len, bool *oom)
{
	Size		total = CMAP_BLOB_HDRSZ + len;
	dsa_pointer dp;
	CmapBlob   *b;

	*oom = false;
	dp = dsa_allocate_extended(cmap_area, total, DSA_ALLOC_NO_OOM | DSA_ALLOC_HUGE);
	if (!DsaPointerIsValid(dp))
	{
		*oom = true;
		return InvalidDsaPointer;
	}
	b = cmap_addr(dp);
	b->r.birth = 0;
	b->r.death = 0;
	b->r.next = InvalidDsaPointer;
	b->r.kind = CMAP_KIND_BLOB;
	b->r.rflags = 0;
	b->pad = 0;
	b->len = len;
	memcpy(b->data, data, len);
	pg_atomic_fetch_add_u64(&cmap_shared->blob_bytes, total);
	return dp;
}

void
cmap_blob_free(dsa_pointer dp)
{
	CmapBlob   *b = cmap_addr(dp);

	pg_atomic_fetch_sub_u64(&cmap_shared->blob_bytes, CMAP_BLOB_HDRSZ + b->len);
	dsa_free(cmap_area, dp);
}

/* The one way cmapext reports a full map: SQLSTATE 53200. */
void
cmap_report_oom(const char *what, Size request)
{
	ereport(ERROR,
			(errcode(ERRCODE_OUT_OF_MEMORY),
			 errmsg("cmapext shared memory is full"),
			 errdetail("Could not allocate %zu bytes for %s; \"cmapext.max_memory\" is %d kB.",
					   request, what, cmap_max_memory_kb),
			 errhint("Delete entries, end sessions that pin old versions, or increase \"cmapext.max_memory\".")));
}
