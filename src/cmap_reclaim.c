/*-------------------------------------------------------------------------
 *
 * cmap_reclaim.c
 *	  Reclamation of retired tree nodes, values and version headers, and the
 *	  background worker that runs it.
 *
 * Every retired object carries its life [birth, death): the versions that
 * can reach it.  An object is freed when no pinned version v of its map has
 * birth <= v < death (the interval rule).  Unlike LMDB's "oldest reader"
 * rule, one long-lived reader then keeps only what its own version needs,
 * not everything retired after it.  A whole tree dropped by cmap_clear() or
 * DROP EXTENSION is retired as one "subtree" entry and expanded lazily:
 * children are never born after their parent, so when the parent is free
 * its children are checked one by one with their own birth.
 *
 * A pass over one map:
 *	1. under the map's writer lock, detach its retire list and its list of
 *	   superseded headers (the lock orders the pass after the publishes that
 *	   retired them);
 *	2. pg_memory_barrier(), then read every process's pin slot (the reader
 *	   side of the protocol in cmap_snapshot.c);
 *	3. free what no pinned version can reach, without any lock;
 *	4. keep what is still pinned on the map's kept list, which later passes
 *	   re-check only when the pins that could keep it change.
 * Between steps 1 and 4 the detached items exist nowhere else: nothing in
 * between may raise an error (no allocation, no interrupt check; the
 * buffers are allocated by the caller), or they would leak for good.
 * Passes are serialised by CmapShared.reclaim_lock.  Nothing here runs in
 * the COMMIT step; it runs in the reclaimer worker (woken by commits and by
 * readers releasing old versions) and, when memory is short, in a
 * committer's PRE_COMMIT step.
 *
 * Copyright (c) 2026, cmapext developers
 * Released under the PostgreSQL License (see LICENSE).
 *
 * IDENTIFICATION
 *	  src/cmap_reclaim.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "cmapext.h"
#include "cmap_reclaim.h"
#include "cmap_shmem.h"
#include "cmap_snapshot.h"
#include "cmap_tree.h"

/* How often the worker runs a pass even if nobody woke it (ms). */
#define CMAP_RECLAIM_NAPTIME	1000

/* Work list for one pass. */
typedef struct ReclaimList
{
	dsa_pointer head;
	dsa_pointer tail;
} ReclaimList;

typedef struct ReclaimPass
{
	uint64	   *pinned;			/* sorted pinned versions of the map */
	int			npinned;
	ReclaimList work;			/* still to examine */
	ReclaimList keep;			/* still reachable */
	uint64		death;			/* for children of an expanded subtree */
	uint64		keep_max_death; /* largest death among items kept */
	uint64		freed_bytes;
	int64		items_delta;	/* change in the number of listed items */
} ReclaimPass;

static void list_push(ReclaimList *l, dsa_pointer dp);
static bool version_pinned(const ReclaimPass *pass, uint64 birth, uint64 death);
static void push_child(dsa_pointer ref, void *arg);
static void reclaim_map(CmapMap *map, uint64 *pinned_buf, bool *slot_pinned);
static int	uint64_cmp(const void *a, const void *b);
static uint64 pins_signature(const ReclaimPass *pass, uint64 below);

static void
list_push(ReclaimList *l, dsa_pointer dp)
{
	((CmapRetired *) cmap_addr(dp))->next = InvalidDsaPointer;
	if (DsaPointerIsValid(l->tail))
		((CmapRetired *) cmap_addr(l->tail))->next = dp;
	else
		l->head = dp;
	l->tail = dp;
}

/* Is any pinned version inside [birth, death)?  pinned is sorted. */
static bool
version_pinned(const ReclaimPass *pass, uint64 birth, uint64 death)
{
	int			lo = 0,
				hi = pass->npinned;

	/* first pinned version >= birth */
	while (lo < hi)
	{
		int			mid = (lo + hi) / 2;

		if (pass->pinned[mid] < birth)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < pass->npinned && pass->pinned[lo] < death;
}

/* Queue a child node or blob of an expanded subtree for examination. */
static void
push_child(dsa_pointer ref, void *arg)
{
	ReclaimPass *pass = (ReclaimPass *) arg;
	CmapRetired *r = cmap_addr(ref);

	r->death = pass->death;
	r->rflags = (r->kind == CMAP_KIND_NODE) ? CMAP_RETIRE_SUBTREE : 0;
	list_push(&pass->work, ref);
	pass->items_delta++;
}

/* A hash of the (sorted) pinned versions older than 'below'. */
static uint64
pins_signature(const ReclaimPass *pass, uint64 below)
{
	uint64		h = UINT64CONST(0xcbf29ce484222325);
	int			i;

	for (i = 0; i < pass->npinned && pass->pinned[i] < below; i++)
	{
		h ^= pass->pinned[i];
		h *= UINT64CONST(0x100000001b3);
	}
	return h ^ (uint64) i;
}

static int
uint64_cmp(const void *a, const void *b)
{
	uint64		x = *(const uint64 *) a;
	uint64		y = *(const uint64 *) b;

	return (x > y) - (x < y);
}

/*
 * One pass over one map.  pinned_buf has room for every pin slot entry;
 * slot_pinned has one flag per header slot.
 */
static void
reclaim_map(CmapMap *map, uint64 *pinned_buf, bool *slot_pinned)
{
	ReclaimPass pass;
	int32		sup_head;
	int32		sup_keep = -1;
	int			p,
				i;

	MemSet(&pass, 0, sizeof(pass));
	pass.work.head = pass.work.tail = InvalidDsaPointer;
	pass.keep.head = pass.keep.tail = InvalidDsaPointer;

	/* 1. detach */
	LWLockAcquire(map->writer_lock, LW_EXCLUSIVE);
	if (map->state == CMAP_MAP_FREE ||
		(!DsaPointerIsValid(map->retire_head) && map->superseded_head < 0 &&
		 !DsaPointerIsValid(map->kept_head)))
	{
		LWLockRelease(map->writer_lock);
		return;
	}
	pass.work.head = map->retire_head;
	pass.work.tail = map->retire_tail;
	map->retire_head = map->retire_tail = InvalidDsaPointer;
	map->retired_new = 0;
	sup_head = map->superseded_head;
	map->superseded_head = -1;
	LWLockRelease(map->writer_lock);

	/* 2. read the pins, after a full fence (pairs with the readers' fence) */
	pg_memory_barrier();
	MemSet(slot_pinned, 0, sizeof(bool) * cmap_shared->nheaders);
	pass.pinned = pinned_buf;
	for (p = 0; p < cmap_shared->nprocs; p++)
	{
		CmapProcSlot *slot = &cmap_shared->slots[p];

		for (i = 0; i < cmap_shared->pins_per_proc; i++)
		{
			uint64		w = pg_atomic_read_u64(&slot->pins[i]);
			int			s;
			CmapHeader *hdr;

			if (w == 0)
				continue;
			s = CMAP_WORD_SLOT(w);
			if (s <= 0 || s >= cmap_shared->nheaders)
				continue;
			slot_pinned[s] = true;

			/*
			 * A pin counts for this map if its header still describes it.  A
			 * pin that was announced but not yet validated may name a
			 * recycled header; counting or ignoring it is equally safe,
			 * because such a reader re-checks before reading anything.
			 */
			hdr = &cmap_shared->headers[s];
			if (hdr->map_index == map->index && hdr->version == CMAP_WORD_VERSION(w))
				pass.pinned[pass.npinned++] = CMAP_WORD_VERSION(w);
		}
	}
	qsort(pass.pinned, pass.npinned, sizeof(uint64), uint64_cmp);

	/*
	 * Items kept by earlier passes need another look only if the pins that
	 * could keep them (versions older than the largest death among them)
	 * changed; pins of newer versions, taken by every new statement, cannot
	 * keep them.  A hash collision only keeps memory a little longer.
	 */
	if (DsaPointerIsValid(map->kept_head) &&
		pins_signature(&pass, map->kept_max_death) != map->kept_sig)
	{
		((CmapRetired *) cmap_addr(map->kept_tail))->next = pass.work.head;
		if (!DsaPointerIsValid(pass.work.head))
			pass.work.tail = map->kept_tail;
		pass.work.head = map->kept_head;
		map->kept_head = map->kept_tail = InvalidDsaPointer;
		map->kept_max_death = 0;
	}

	/* 3. free what nobody can reach */
	while (DsaPointerIsValid(pass.work.head))
	{
		dsa_pointer dp = pass.work.head;
		CmapRetired *r = cmap_addr(dp);

		pass.work.head = r->next;
		if (!DsaPointerIsValid(pass.work.head))
			pass.work.tail = InvalidDsaPointer;

		if (version_pinned(&pass, r->birth, r->death))
		{
			list_push(&pass.keep, dp);
			pass.keep_max_death = Max(pass.keep_max_death, r->death);
			continue;
		}

		pass.items_delta--;
		if (r->kind == CMAP_KIND_BLOB)
		{
			pass.freed_bytes += CMAP_BLOB_HDRSZ + ((CmapBlob *) r)->len;
			cmap_blob_free(dp);
		}
		else
		{
			if (r->rflags & CMAP_RETIRE_SUBTREE)
			{
				pass.death = r->death;
				cmap_node_foreach_ref(dp, push_child, &pass);
			}
			pass.freed_bytes += CMAP_NODE_SIZE;
			cmap_pool_put(dp);
		}
	}

	/* headers: free the superseded ones nobody pins */
	while (sup_head >= 0)
	{
		int32		s = sup_head;

		sup_head = cmap_shared->headers[s].next_free;
		if (slot_pinned[s])
		{
			cmap_shared->headers[s].next_free = sup_keep;
			sup_keep = s;
		}
		else
			cmap_header_release(s);
	}

	/* 4. put back what is still reachable, on the kept list */
	if (DsaPointerIsValid(pass.keep.head))
	{
		if (DsaPointerIsValid(map->kept_head))
			((CmapRetired *) cmap_addr(map->kept_tail))->next = pass.keep.head;
		else
			map->kept_head = pass.keep.head;
		map->kept_tail = pass.keep.tail;
		map->kept_max_death = Max(map->kept_max_death, pass.keep_max_death);
	}
	map->kept_sig = pins_signature(&pass, map->kept_max_death);
	LWLockAcquire(map->writer_lock, LW_EXCLUSIVE);
	while (sup_keep >= 0)
	{
		int32		s = sup_keep;

		sup_keep = cmap_shared->headers[s].next_free;
		cmap_shared->headers[s].next_free = map->superseded_head;
		map->superseded_head = s;
	}
	map->retired_bytes -= Min(map->retired_bytes, pass.freed_bytes);
	if (pass.items_delta < 0 && (uint64) -pass.items_delta > map->retired_items)
		map->retired_items = 0;
	else
		map->retired_items += pass.items_delta;
	LWLockRelease(map->writer_lock);

	if (pass.freed_bytes > 0)
	{
		pg_atomic_fetch_add_u64(&cmap_shared->reclaimed_bytes, pass.freed_bytes);
		pg_atomic_fetch_add_u64(&map->reclaimed_bytes, pass.freed_bytes);
	}

	if (map->state == CMAP_MAP_DROPPED)
		cmap_release_dropped_map(map);
}

/*
 * One pass over every map, then give surplus pool nodes back to DSA.
 */
void
cmap_reclaim_now(void)
{
	uint64	   *pinned;
	bool	   *slot_pinned;
	int			i;
	uint64		keep;

	pinned = palloc(sizeof(uint64) * cmap_shared->nprocs * CMAP_MAX_PINS_PER_PROC);
	slot_pinned = palloc(sizeof(bool) * cmap_shared->nheaders);

	LWLockAcquire(cmap_shared->reclaim_lock, LW_EXCLUSIVE);
	for (i = 0; i < cmap_shared->max_maps; i++)
		reclaim_map(cmap_map_by_index(i), pinned, slot_pinned);
	LWLockRelease(cmap_shared->reclaim_lock);
	pg_atomic_fetch_add_u64(&cmap_shared->reclaim_runs, 1);

	/* keep a modest stock of free nodes for commits, return the rest */
	keep = Max(64, cmap_shared->dsa_size / CMAP_NODE_SIZE / 64);
	cmap_pool_trim(keep);

	pfree(pinned);
	pfree(slot_pinned);
}

/* ------------------------------------------------------------------------
 * The reclaimer background worker
 * ------------------------------------------------------------------------
 */

void
cmap_reclaimer_register(void)
{
	BackgroundWorker worker;

	MemSet(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS;
	worker.bgw_start_time = BgWorkerStart_PostmasterStart;
	worker.bgw_restart_time = 1;
	strlcpy(worker.bgw_library_name, "cmapext", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "cmap_reclaimer_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "cmapext reclaimer", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "cmapext reclaimer", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

static void
cmap_reclaimer_detach(int code, Datum arg)
{
	if (cmap_shared != NULL && cmap_shared->reclaimer_latch == MyLatch)
		cmap_shared->reclaimer_latch = NULL;
}

void
cmap_reclaimer_main(Datum main_arg)
{
	MemoryContext pass_cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	if (cmap_shared == NULL)
		proc_exit(0);

	cmap_area = dsa_attach_in_place(cmap_shared->dsa_place, NULL);
	dsa_pin_mapping(cmap_area);
	cmap_shared->reclaimer_pid = MyProcPid;
	cmap_shared->reclaimer_latch = MyLatch;
	before_shmem_exit(cmap_reclaimer_detach, (Datum) 0);

	pass_cxt = AllocSetContextCreate(TopMemoryContext, "cmapext reclaimer",
									 ALLOCSET_DEFAULT_SIZES);

	while (!ShutdownRequestPending)
	{
		MemoryContext oldcxt;

		ResetLatch(MyLatch);
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		pg_atomic_write_u32(&cmap_shared->reclaim_requested, 0);
		oldcxt = MemoryContextSwitchTo(pass_cxt);
		cmap_reclaim_now();
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(pass_cxt);

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 CMAP_RECLAIM_NAPTIME, PG_WAIT_EXTENSION);
	}
	proc_exit(0);
}
