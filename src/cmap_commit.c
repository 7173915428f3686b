/*-------------------------------------------------------------------------
 *
 * cmap_commit.c
 *	  The commit protocol: a transaction's batch becomes exactly one new
 *	  version of its map, published at commit, or nothing at all.
 *
 * PostgreSQL gives two moments.  XACT_EVENT_PRE_COMMIT runs while the
 * transaction can still fail cleanly; XACT_EVENT_COMMIT runs after the
 * commit is durable, with interrupts held, and must not fail (an ERROR there
 * is promoted to PANIC).  Publishing at PRE_COMMIT would expose writes of
 * transactions that still abort afterwards (deferred triggers run before
 * us, but serialization failures, NOTIFY and more come after), so:
 *
 *	PRE_COMMIT: sort the batch, copy large values into blobs, reserve every
 *		node the apply can need and one version header (any of this may
 *		raise 53200 and nothing has changed), then open a commit window;
 *	COMMIT: under the map's writer lock, apply the batch onto the version
 *		that is current *now* (blind writes commute: last committer wins),
 *		using reserved nodes only, publish, append the retired objects to
 *		the map's retire list, release the lock;
 *	ABORT: give everything back.
 *
 * Commit windows.  Between its PRE_COMMIT and its COMMIT a committer holds
 * an open window on its map, announcing (as a Bloom filter) the keys it
 * writes.  Three kinds of commits:
 *
 *	- blind (store, delete, swap, clear; at most CMAP_SMALL_BATCH entries):
 *	  reserve, open a window, apply at COMMIT.  They never conflict with one
 *	  another: the last committer wins;
 *	- conditional (cmap_load_or_store, cmap_compare_and_*, cmap_increment;
 *	  small): their validation (40001, 22P02, 22003) must happen where an
 *	  ERROR is allowed and must still hold when they publish.  They take a
 *	  heavyweight lock per map (so they queue behind each other visibly to
 *	  the deadlock detector, and interruptibly), open a window, then
 *	  *protect* the keys they depend on: a blind committer that wants to
 *	  write a protected key steps back and waits until the protector has
 *	  published.  With its keys frozen, the protector validates against the
 *	  current version, turns increments into plain stores, and publishes at
 *	  COMMIT like a blind batch.  Blind commits of other keys go on;
 *	- large (more than CMAP_SMALL_BATCH entries): their worst-case node need
 *	  is too large to reserve blindly, so they take the map's exclusive
 *	  window: wait until no window is open (new windows wait meanwhile),
 *	  build the complete new version at PRE_COMMIT (exact memory, errors
 *	  allowed, validation included) and only publish it at COMMIT.
 *
 * A waiting exclusive committer makes new windows wait behind it, so that a
 * stream of small commits cannot starve it, but for one second at most: an
 * open window can last as long as its transaction's commit (a synchronous
 * standby that does not answer, say), and a large commit stuck behind it
 * must not stop every other writer of the map.
 *
 * Registration is Dekker-style: a blind committer announces its window, then
 * (after a full barrier) looks for protectors; a protector announces its
 * protection, then (after a full barrier) looks for open windows, and waits
 * for those that write its keys.  At least one of the two sees the other.
 * Waits are condition-variable sleeps (interruptible by cancel and
 * termination; statement_timeout does not cover COMMIT, PostgreSQL stops it
 * before committing), never with an LWLock held, and never by a committer
 * that others wait for: a blind committer steps back (closes its window)
 * before waiting, so no cycle can form outside the lock manager.
 *
 * The reservation of a small commit covers height + 2 levels of growth
 * while it is in flight; the COMMIT step falls back to unreserved pool
 * nodes, then to a non-failing allocation (cmap_pool_take_emergency).
 *
 * Code in commit_apply_small() and cmap_commit_publish() runs in the COMMIT
 * step: no palloc, no ereport(ERROR), no catalog access.  Keep it so.
 *
 * Copyright (c) 2026, cmapext developers
 * Released under the PostgreSQL License (see LICENSE).
 *
 * IDENTIFICATION
 *	  src/cmap_commit.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "cmapext.h"
#include "cmap_batch.h"
#include "cmap_commit.h"
#include "cmap_reclaim.h"
#include "cmap_snapshot.h"
#include "cmap_tree.h"

typedef enum CommitStage
{
	CS_IDLE,
	CS_SMALL,					/* window open, nodes reserved */
	CS_EXCL_WAITING,			/* waiting for the exclusive window */
	CS_EXCL_BUILT				/* exclusive window held, version built */
} CommitStage;

/* A database dropped by this transaction. */
typedef struct DroppedDb
{
	Oid			dboid;
	CmapMap    *map;
	int			hdr_slot;
} DroppedDb;

#define MAX_DROPPED_DBS 8

/* State of the current transaction's commit. */
static struct
{
	CommitStage stage;
	CmapMap    *map;
	CmapEntry **ops;
	int			nops;
	bool		cleared;
	uint64		reserved;		/* CS_SMALL: nodes reserved */
	bool		protecting;		/* CS_SMALL: our window protects keys */
	int			hdr_slot;		/* reserved header or -1 */
	uint64		base_word;		/* CS_EXCL_BUILT: version built upon */
	CmapWriter	writer;			/* CS_EXCL_BUILT: the new version */

	DroppedDb	dropped[MAX_DROPPED_DBS];
	int			ndropped;
}			cs = {CS_IDLE, NULL, NULL, 0, false, 0, false, -1};

/* State of an immediate-mode write in progress (for abort cleanup). */
static struct
{
	bool		active;
	CmapMap    *map;
	dsa_pointer blob;
	uint64		reserved;
	int			hdr_slot;
	bool		window;			/* holds a (non-exclusive) window */
	bool		exclusive;		/* waits for or holds the exclusive window */
	CmapWriter *writer;			/* exclusive path: a writer being built */
}			imm;

static void cmap_xact_callback(XactEvent event, void *arg);
static void cmap_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
								  SubTransactionId parentSubid, void *arg);
static void commit_pre_commit(void);
static void commit_commit(void);
static void commit_abort(void);
static void commit_end(void);
static void immediate_cleanup(void);
static void window_open(CmapMap *map, const uint64 *wbloom);
static void window_close(CmapMap *map);
static void window_protect(CmapMap *map, const uint64 *pbloom);
static void window_unprotect(CmapMap *map);
static void window_acquire_exclusive(CmapMap *map);
static void window_release_exclusive(CmapMap *map);
static void make_blobs(CmapEntry **ops, int nops);
static void pre_commit_exclusive(CmapMap *map);
static bool reserve_small(CmapMap *map, uint64 nops, uint64 *reserved);
static void resolve_conditional(CmapEntry **ops, int *nops, bool cleared);
static void validate_and_apply(CmapWriter *w, CmapEntry **ops, int nops, bool cleared);
static void report_conflict(const CmapEntry *e);
static bool dependency_holds(CmapMap *map, const CmapEntry *e, bool found,
							 const CmapItem *item);
static void apply_blind(CmapWriter *w, CmapEntry **ops, int nops, bool cleared);
static void reset_dropped_db(DroppedDb *d);

void
cmap_commit_register_callbacks(void)
{
	RegisterXactCallback(cmap_xact_callback, NULL);
	RegisterSubXactCallback(cmap_subxact_callback, NULL);
}

static void
cmap_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			commit_pre_commit();
			break;
		case XACT_EVENT_COMMIT:
			commit_commit();
			commit_end();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			commit_abort();
			commit_end();
			break;
		case XACT_EVENT_PRE_PREPARE:
			if (cmap_batch_active() || cs.ndropped > 0)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that has written to cmapext"),
						 errdetail("Map writes are published at commit and cannot be held by a prepared transaction."),
						 errhint("Commit the map writes in a separate transaction.")));
			break;
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
			commit_end();
			break;
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
			break;
	}
}

static void
cmap_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					  SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_START_SUB)
		cmap_batch_subxact_start();
	else if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		immediate_cleanup();
		cmap_batch_subxact_abort(mySubid);
		cmap_views_subxact_abort(mySubid);
	}
}

/* Remember a DROP DATABASE of a database that has a map. */
void
cmap_commit_note_dropdb(Oid dboid)
{
	CmapMap    *map = cmap_lookup_map(dboid);

	if (map == NULL || cs.ndropped >= MAX_DROPPED_DBS)
		return;
	cs.dropped[cs.ndropped].dboid = dboid;
	cs.dropped[cs.ndropped].map = map;
	cs.dropped[cs.ndropped].hdr_slot = -1;
	cs.ndropped++;
}

/* ------------------------------------------------------------------------
 * Windows
 * ------------------------------------------------------------------------
 */

static inline void
bloom_add(uint64 *bloom, uint32 hash)
{
	uint32		b1 = hash & 511;
	uint32		b2 = (hash >> 9) & 511;

	bloom[b1 >> 6] |= UINT64CONST(1) << (b1 & 63);
	bloom[b2 >> 6] |= UINT64CONST(1) << (b2 & 63);
}

static inline void
bloom_fill(uint64 *bloom)
{
	int			i;

	for (i = 0; i < CMAP_BLOOM_WORDS; i++)
		bloom[i] = ~UINT64CONST(0);
}

static inline bool
bloom_intersects(const uint64 *a, const uint64 *b)
{
	int			i;

	for (i = 0; i < CMAP_BLOOM_WORDS; i++)
		if (a[i] & b[i])
			return true;
	return false;
}

/*
 * Does another committer of this map, with a window in the given state,
 * have a set (its protect set for CMAP_WIN_PROTECT, its write set for
 * CMAP_WIN_OPEN) that may share a key with ours?
 */
static bool
windows_conflict(CmapMap *map, int32 state, const uint64 *bloom)
{
	int			p;

	for (p = 0; p < cmap_shared->nprocs; p++)
	{
		CmapProcWindow *w = &cmap_shared->windows[p];

		if (p != cmap_my_procno && w->map_index == map->index &&
			w->state == state &&
			bloom_intersects(state == CMAP_WIN_PROTECT ? w->pbloom : w->wbloom,
							 bloom))
			return true;
	}
	return false;
}

/* Is a key we write protected by another committer of this map? */
static inline bool
protected_conflict(CmapMap *map, const uint64 *wbloom)
{
	return windows_conflict(map, CMAP_WIN_PROTECT, wbloom);
}

/* Does an open (unprotecting) window of this map write a key we protect? */
static inline bool
window_conflict(CmapMap *map, const uint64 *pbloom)
{
	return windows_conflict(map, CMAP_WIN_OPEN, pbloom);
}

/*
 * Open a window for a commit that writes the keys in wbloom.  Waits while an
 * exclusive committer holds or awaits the map, and while a protector guards
 * one of our keys (then without holding a window: see the file header).
 */
/* How long a waiting exclusive committer keeps priority over new windows. */
#define CMAP_EXCL_PRIORITY_MS	1000

static void
window_open(CmapMap *map, const uint64 *wbloom)
{
	CmapProcWindow *me = &cmap_shared->windows[cmap_my_procno];
	bool		slept = false;

	for (;;)
	{
		bool		opened = false;
		TimestampTz now = 0;

		/* racy peek: only read the clock when someone waits for exclusivity */
		if (map->excl_waiters > 0)
			now = GetCurrentTimestamp();

		memcpy(me->wbloom, wbloom, sizeof(me->wbloom));
		SpinLockAcquire(&map->win_lock);
		if (map->excl_owner < 0 &&
			(map->excl_waiters == 0 ||
			 (now != 0 && TimestampDifferenceExceeds(map->excl_wait_since, now,
													 CMAP_EXCL_PRIORITY_MS))))
		{
			map->windows_open++;
			me->map_index = map->index;
			me->state = CMAP_WIN_OPEN;
			opened = true;
		}
		SpinLockRelease(&map->win_lock);

		if (opened)
		{
			/* announce, then look for protectors (pairs with window_protect) */
			pg_memory_barrier();
			if (pg_atomic_read_u32(&map->nprotectors) == 0 ||
				!protected_conflict(map, wbloom))
				break;
			/* step back, and wait until our keys are free */
			window_close(map);
			while (protected_conflict(map, wbloom))
			{
				ConditionVariableSleep(&map->win_cv, PG_WAIT_EXTENSION);
				slept = true;
			}
			continue;
		}
		/* the first call only prepares to sleep; then we re-check */
		(void) ConditionVariableTimedSleep(&map->win_cv, CMAP_EXCL_PRIORITY_MS,
										   PG_WAIT_EXTENSION);
		slept = true;
	}
	if (slept)
		ConditionVariableCancelSleep();
}

/* Close a window.  Safe in the COMMIT step. */
static void
window_close(CmapMap *map)
{
	CmapProcWindow *me = &cmap_shared->windows[cmap_my_procno];
	bool		wake;

	SpinLockAcquire(&map->win_lock);
	Assert(map->windows_open > 0);
	map->windows_open--;
	me->map_index = -1;
	me->state = CMAP_WIN_NONE;
	wake = (map->windows_open == 0 && map->excl_waiters > 0) ||
		pg_atomic_read_u32(&map->nprotectors) > 0;
	SpinLockRelease(&map->win_lock);
	if (wake)
		ConditionVariableBroadcast(&map->win_cv);
}

/*
 * Protect the keys in pbloom (our window is open): from now on no blind
 * commit that writes one of them opens a window until we unprotect; wait
 * for those already open.
 */
static void
window_protect(CmapMap *map, const uint64 *pbloom)
{
	CmapProcWindow *me = &cmap_shared->windows[cmap_my_procno];
	bool		slept = false;

	memcpy(me->pbloom, pbloom, sizeof(me->pbloom));
	me->state = CMAP_WIN_PROTECT;
	pg_atomic_fetch_add_u32(&map->nprotectors, 1);
	cs.protecting = true;
	/* announce, then look for open windows (pairs with window_open) */
	pg_memory_barrier();
	while (window_conflict(map, pbloom))
	{
		ConditionVariableSleep(&map->win_cv, PG_WAIT_EXTENSION);
		slept = true;
	}
	if (slept)
		ConditionVariableCancelSleep();
}

/* Stop protecting (after publishing, or on abort).  Safe in COMMIT. */
static void
window_unprotect(CmapMap *map)
{
	CmapProcWindow *me = &cmap_shared->windows[cmap_my_procno];

	me->state = CMAP_WIN_OPEN;
	pg_atomic_fetch_sub_u32(&map->nprotectors, 1);
	cs.protecting = false;
	ConditionVariableBroadcast(&map->win_cv);
}

/*
 * The heavyweight lock that queues conditional committers of a map behind
 * each other.  A lock-manager lock, so that waiting for it is visible in
 * pg_locks and to the deadlock detector, and can be cancelled; held until
 * the end of the transaction.
 */
void
cmap_cond_lock(CmapMap *map)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, CMAP_COND_LOCK_KEY,
						 (uint32) map->index, CMAP_COND_LOCK_FIELD);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

static void
window_acquire_exclusive(CmapMap *map)
{
	bool		slept = false;
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&map->win_lock);
	if (map->excl_waiters++ == 0)
		map->excl_wait_since = now;
	SpinLockRelease(&map->win_lock);

	for (;;)
	{
		SpinLockAcquire(&map->win_lock);
		if (map->excl_owner < 0 && map->windows_open == 0)
		{
			map->excl_owner = cmap_my_procno;
			map->excl_waiters--;
			cmap_shared->windows[cmap_my_procno].map_index = map->index;
			cmap_shared->windows[cmap_my_procno].exclusive = true;
			SpinLockRelease(&map->win_lock);
			break;
		}
		SpinLockRelease(&map->win_lock);
		ConditionVariableSleep(&map->win_cv, PG_WAIT_EXTENSION);
		slept = true;
	}
	if (slept)
		ConditionVariableCancelSleep();
}

/* Give up the exclusive window, or stop waiting for it.  Safe in COMMIT. */
static void
window_release_exclusive(CmapMap *map)
{
	SpinLockAcquire(&map->win_lock);
	if (map->excl_owner == cmap_my_procno)
		map->excl_owner = -1;
	else
	{
		Assert(map->excl_waiters > 0);
		map->excl_waiters--;
	}
	cmap_shared->windows[cmap_my_procno].map_index = -1;
	cmap_shared->windows[cmap_my_procno].exclusive = false;
	SpinLockRelease(&map->win_lock);
	ConditionVariableBroadcast(&map->win_cv);
}

/* ------------------------------------------------------------------------
 * PRE_COMMIT
 * ------------------------------------------------------------------------
 */

/*
 * Copy every value too long to live inside a leaf into a blob.  An out of
 * memory error leaves the blobs made so far in the entries; the abort
 * callback frees them.
 */
static void
make_blobs(CmapEntry **ops, int nops)
{
	int			i;

	for (i = 0; i < nops; i++)
	{
		CmapEntry  *e = ops[i];
		bool		oom;

		if (e->st.op != CMAP_OP_PUT || e->st.vallen <= CMAP_INLINE_VALUE_MAX ||
			DsaPointerIsValid(e->blob))
			continue;
		e->blob = cmap_blob_alloc(e->st.value, e->st.vallen, &oom);
		if (!DsaPointerIsValid(e->blob))
		{
			cmap_reclaim_now();
			cmap_pool_trim(0);
			e->blob = cmap_blob_alloc(e->st.value, e->st.vallen, &oom);
			if (!DsaPointerIsValid(e->blob))
				cmap_report_oom("a value", CMAP_BLOB_HDRSZ + e->st.vallen);
		}
	}
}

/*
 * The current version of a map, for a committer that has shut out the other
 * publishers (it holds writer_lock or the exclusive window): the version
 * cannot change under it, nor be reclaimed, since it is current.  Returns its
 * header; *word is its published word and *tree its tree.
 */
static CmapHeader *
current_version(CmapMap *map, uint64 *word, CmapTree *tree)
{
	CmapHeader *hdr;

	*word = cmap_current_word(map);
	hdr = &cmap_shared->headers[CMAP_WORD_SLOT(*word)];
	*tree = cmap_header_tree(hdr);
	return hdr;
}

/*
 * Exclusive path: freeze the map, then build the whole new version now,
 * with exact memory use and errors allowed; COMMIT only publishes it.
 */
static void
pre_commit_exclusive(CmapMap *map)
{
	uint64		word;
	CmapHeader *base;
	CmapTree	tree;

	/* if we are cancelled while waiting, abort stops the wait */
	cs.stage = CS_EXCL_WAITING;
	window_acquire_exclusive(map);

	/*
	 * Nobody else can publish this map now, so its current version is stable
	 * and cannot be reclaimed (it is current): build on it.
	 */
	base = current_version(map, &word, &tree);
	if (CMAP_WORD_VERSION(word) >= CMAP_MAX_VERSION)
		elog(ERROR, "cmapext: version counter exhausted");
	cs.hdr_slot = cmap_header_reserve();
	cs.base_word = word;
	cmap_writer_init(&cs.writer, map->index, CMAP_WORD_VERSION(word) + 1,
					 &tree, base->nodes, base->blob_bytes);
	cs.writer.may_fail = true;
	cs.writer.cxt = TopTransactionContext;
	cs.stage = CS_EXCL_BUILT;
	validate_and_apply(&cs.writer, cs.ops, cs.nops, cs.cleared);
}

/*
 * Reserve the worst case of a small batch.  Returns false when memory is
 * too tight for the worst case even after reclaiming: the caller then
 * builds the batch exactly instead (which is what lets deletes, and
 * anything else that fits, through on an almost full map).
 */
static bool
reserve_small(CmapMap *map, uint64 nops, uint64 *reserved)
{
	uint64		bound = cmap_writer_bound(nops, pg_atomic_read_u32(&map->height_hint) + 2);

	if (!cmap_pool_try_reserve(bound))
	{
		cmap_reclaim_now();
		if (!cmap_pool_try_reserve(bound))
			return false;
	}
	/* record the reservation only once it exists: abort gives it back */
	*reserved = bound;
	return true;
}

static void
commit_pre_commit(void)
{
	int			i;

	if (cmap_batch_active())
	{
		CmapMap    *map;

		cmap_attach();
		map = cmap_my_map;
		cs.map = map;
		cs.ops = cmap_batch_sorted(&cs.nops);
		cs.cleared = cmap_batch_cleared();

		make_blobs(cs.ops, cs.nops);

		if (cs.nops <= CMAP_SMALL_BATCH && reserve_small(map, cs.nops, &cs.reserved))
		{
			uint64		wbloom[CMAP_BLOOM_WORDS];
			uint64		pbloom[CMAP_BLOOM_WORDS];
			bool		conditional = cmap_batch_has_deps();

			MemSet(wbloom, 0, sizeof(wbloom));
			MemSet(pbloom, 0, sizeof(pbloom));
			if (cs.cleared)
				bloom_fill(wbloom);
			for (i = 0; i < cs.nops; i++)
			{
				CmapEntry  *e = cs.ops[i];

				if (e->st.op != CMAP_OP_CHECK)
					bloom_add(wbloom, e->hash);
				if (e->st.dep != CMAP_DEP_NONE || e->st.op == CMAP_OP_INCR)
					bloom_add(pbloom, e->hash);
			}

			/* conditional committers queue here, one at a time per map */
			if (conditional)
				cmap_cond_lock(map);

			cs.hdr_slot = cmap_header_reserve();
			window_open(map, wbloom);
			cs.stage = CS_SMALL;

			if (conditional)
			{
				window_protect(map, pbloom);
				resolve_conditional(cs.ops, &cs.nops, cs.cleared);
			}
		}
		else
			pre_commit_exclusive(map);
	}

	for (i = 0; i < cs.ndropped; i++)
		cs.dropped[i].hdr_slot = cmap_header_reserve();
}

/*
 * Does an entry's recorded dependency still hold on this base?  A present
 * key must carry the same entry version; an absent key must still be
 * absent and must not have been deleted (or the map cleared) since the
 * decision (see CMAP_DELTAB_SIZE).
 */
static bool
dependency_holds(CmapMap *map, const CmapEntry *e, bool found, const CmapItem *item)
{
	if (e->st.dep == CMAP_DEP_VERSION)
		return found && item->version == e->st.dep_version;
	if (e->st.dep == CMAP_DEP_ABSENT)
		return !found &&
			map->last_clear <= e->st.dep_view &&
			map->deltab[cmap_deltab_slot(e->key, e->keylen)] <= e->st.dep_view;
	return true;
}

/* Raise the 40001 error of a failed validation. */
static void
report_conflict(const CmapEntry *e)
{
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("could not serialize access due to concurrent update"),
			 errdetail("Key \"%.*s\" was changed by a concurrent transaction after this transaction read it.",
					   e->keylen, e->key),
			 errhint("The transaction might succeed if retried.")));
}

/*
 * Small conditional batch, with its keys protected: validate what its
 * decisions depended on against the current version, and turn increments
 * into plain stores of their final value.  Validation-only entries are
 * dropped.  Runs at PRE_COMMIT: errors abort with nothing applied.  The
 * protected keys cannot change until we publish, so what we compute here
 * still holds at COMMIT.
 */
static void
resolve_conditional(CmapEntry **ops, int *nops, bool cleared)
{
	const CmapView *view = cmap_view_latest();

	/*
	 * Dependencies are checked against the committed map even if this
	 * transaction cleared it: they were recorded before the clear.  (A
	 * cleared batch has no increments: they become stores after a clear.)
	 */
	CmapTree	base = view->tree;
	int			i,
				j = 0;

	for (i = 0; i < *nops; i++)
	{
		CmapEntry  *e = ops[i];
		CmapItem	item;
		bool		found = false;

		if (e->st.dep != CMAP_DEP_NONE || e->st.op == CMAP_OP_INCR)
			found = cmap_tree_lookup(&base, e->key, e->keylen, &item);
		if (!dependency_holds(cs.map, e, found, &item))
			report_conflict(e);

		if (e->st.op == CMAP_OP_INCR)
		{
			int64		v = found ? cmap_parse_int8(item.value, item.vallen,
													e->key, e->keylen) : 0;
			char		buf[32];

			v = cmap_apply_delta(v, e->st.delta, e->key, e->keylen);
			snprintf(buf, sizeof(buf), INT64_FORMAT, v);
			cmap_batch_set_put(e, buf, strlen(buf));
		}
		if (e->st.op != CMAP_OP_CHECK)
			ops[j++] = e;
	}
	*nops = j;
}

/*
 * Exclusive path: check what conditional operations depended on, compute
 * increments, and build the whole new version.  Runs at PRE_COMMIT: errors
 * abort the transaction with nothing applied.
 */
static void
validate_and_apply(CmapWriter *w, CmapEntry **ops, int nops, bool cleared)
{
	int			i;

	/* dependencies were recorded against the committed map (even if cleared) */
	CmapTree	base = w->tree;

	for (i = 0; i < nops; i++)
	{
		CmapEntry  *e = ops[i];
		CmapItem	item;
		bool		found;

		if (e->st.dep == CMAP_DEP_NONE)
			continue;
		found = cmap_tree_lookup(&base, e->key, e->keylen, &item);
		if (!dependency_holds(cs.map, e, found, &item))
			report_conflict(e);
		CHECK_FOR_INTERRUPTS();
	}

	if (cleared)
		cmap_writer_clear(w);
	for (i = 0; i < nops; i++)
	{
		CmapEntry  *e = ops[i];

		switch (e->st.op)
		{
			case CMAP_OP_PUT:
				if (DsaPointerIsValid(e->blob))
					cmap_writer_put(w, e->key, e->keylen, NULL, 0, e->blob);
				else
					cmap_writer_put(w, e->key, e->keylen, e->st.value, e->st.vallen,
									InvalidDsaPointer);
				break;
			case CMAP_OP_DEL:
				cmap_writer_delete(w, e->key, e->keylen);
				break;
			case CMAP_OP_INCR:
				{
					CmapItem	item;
					int64		v = 0;
					char		buf[32];

					if (cmap_tree_lookup(&w->tree, e->key, e->keylen, &item))
						v = cmap_parse_int8(item.value, item.vallen, e->key, e->keylen);
					v = cmap_apply_delta(v, e->st.delta, e->key, e->keylen);
					snprintf(buf, sizeof(buf), INT64_FORMAT, v);
					cmap_writer_put(w, e->key, e->keylen, buf, strlen(buf),
									InvalidDsaPointer);
				}
				break;
			default:
				break;			/* CHECK: validation only */
		}
		if ((i & 1023) == 0)
			CHECK_FOR_INTERRUPTS();
	}
}

/* ------------------------------------------------------------------------
 * COMMIT (must not fail)
 * ------------------------------------------------------------------------
 */

/*
 * Apply a batch of blind writes.  COMMIT step: nothing here may fail, and
 * cmap_writer_put/delete take nodes from the reservation only.
 */
static void
apply_blind(CmapWriter *w, CmapEntry **ops, int nops, bool cleared)
{
	int			i;

	if (cleared)
		cmap_writer_clear(w);
	for (i = 0; i < nops; i++)
	{
		CmapEntry  *e = ops[i];

		if (e->st.op == CMAP_OP_PUT)
		{
			if (DsaPointerIsValid(e->blob))
				cmap_writer_put(w, e->key, e->keylen, NULL, 0, e->blob);
			else
				cmap_writer_put(w, e->key, e->keylen, e->st.value, e->st.vallen,
								InvalidDsaPointer);
		}
		else if (e->st.op == CMAP_OP_DEL)
			cmap_writer_delete(w, e->key, e->keylen);
	}
}

/*
 * Publish what a writer built and hand its retired objects to the map.
 * Caller holds map->writer_lock.  Returns false, publishing nothing, when
 * the batch changed nothing (for instance it only deleted absent keys).
 * Must not fail.
 */
bool
cmap_commit_publish(CmapMap *map, CmapWriter *w, int hdr_slot)
{
	CmapHeader *hdr = &cmap_shared->headers[hdr_slot];

	if (!w->changed)
		return false;

	hdr->version = w->version;
	hdr->root = w->tree.root;
	hdr->height = w->tree.height;
	hdr->count = w->tree.count;
	hdr->nodes = w->nodes;
	hdr->blob_bytes = w->blob_bytes;
	hdr->map_index = map->index;
	hdr->commit_time = GetCurrentTimestamp();
	cmap_publish(map, hdr_slot);

	if (DsaPointerIsValid(w->retire_head))
	{
		if (DsaPointerIsValid(map->retire_tail))
			((CmapRetired *) cmap_addr(map->retire_tail))->next = w->retire_head;
		else
			map->retire_head = w->retire_head;
		map->retire_tail = w->retire_tail;
		map->retired_bytes += w->retired_bytes;
		map->retired_new += w->retired_bytes;
		map->retired_items += w->retired_items;
	}
	return true;
}

/* Apply and publish a small batch onto the current version.  Must not fail. */
static void
commit_apply_small(void)
{
	CmapMap    *map = cs.map;
	CmapWriter *w = &cs.writer;
	uint64		word;
	CmapHeader *base;
	CmapTree	tree;
	bool		published;

	LWLockAcquire(map->writer_lock, LW_EXCLUSIVE);
	base = current_version(map, &word, &tree);
	cmap_writer_init(w, map->index, CMAP_WORD_VERSION(word) + 1, &tree,
					 base->nodes, base->blob_bytes);
	w->may_fail = false;
	w->reserved = cs.reserved;
	cs.reserved = 0;			/* the writer owns the reservation now */

	apply_blind(w, cs.ops, cs.nops, cs.cleared);
	published = cmap_commit_publish(map, w, cs.hdr_slot);
	LWLockRelease(map->writer_lock);

	if (published)
		cs.hdr_slot = -1;
	cmap_writer_finish(w);
	if (cs.protecting)
		window_unprotect(map);
	window_close(map);
	cmap_reclaim_maybe(map);
}

static void
commit_commit(void)
{
	int			i;

	switch (cs.stage)
	{
		case CS_SMALL:
			commit_apply_small();
			break;
		case CS_EXCL_BUILT:
			{
				CmapMap    *map = cs.map;
				bool		published;

				LWLockAcquire(map->writer_lock, LW_EXCLUSIVE);
				/* exclusivity guarantees nobody published in between */
				if (cmap_current_word(map) != cs.base_word)
					elog(PANIC, "cmapext: map changed during an exclusive commit");
				published = cmap_commit_publish(map, &cs.writer, cs.hdr_slot);
				LWLockRelease(map->writer_lock);
				if (published)
					cs.hdr_slot = -1;
				/* unchanged means no node was taken: nothing to discard */
				cmap_writer_finish(&cs.writer);
				window_release_exclusive(map);
				cmap_reclaim_maybe(map);
			}
			break;
		case CS_EXCL_WAITING:
		case CS_IDLE:
			break;
	}
	if (cs.hdr_slot >= 0)
	{
		cmap_header_release(cs.hdr_slot);
		cs.hdr_slot = -1;
	}
	cs.stage = CS_IDLE;

	for (i = 0; i < cs.ndropped; i++)
		reset_dropped_db(&cs.dropped[i]);
	if (cs.ndropped > 0)
		cmap_reclaim_request();
}

/*
 * A dropped database's map: publish an empty version, retire the whole
 * tree, and mark the slot for release once reclaimed.  COMMIT step.
 */
static void
reset_dropped_db(DroppedDb *d)
{
	CmapMap    *map = d->map;
	CmapWriter	w;
	uint64		word;
	CmapHeader *base;
	CmapTree	tree;

	LWLockAcquire(map->writer_lock, LW_EXCLUSIVE);
	if (map->state != CMAP_MAP_ACTIVE || map->dboid != d->dboid)
	{
		LWLockRelease(map->writer_lock);
		cmap_header_release(d->hdr_slot);
		return;
	}
	base = current_version(map, &word, &tree);
	cmap_writer_init(&w, map->index, CMAP_WORD_VERSION(word) + 1, &tree,
					 base->nodes, base->blob_bytes);
	w.may_fail = false;
	cmap_writer_clear(&w);
	w.changed = true;			/* publish even an empty map: state changes */
	cmap_commit_publish(map, &w, d->hdr_slot);
	map->state = CMAP_MAP_DROPPED;
	LWLockRelease(map->writer_lock);
	d->hdr_slot = -1;
}

/* ------------------------------------------------------------------------
 * ABORT
 * ------------------------------------------------------------------------
 */

static void
commit_abort(void)
{
	int			i;

	switch (cs.stage)
	{
		case CS_SMALL:
			cmap_pool_unreserve(cs.reserved);
			cs.reserved = 0;
			if (cs.protecting)
				window_unprotect(cs.map);
			window_close(cs.map);
			break;
		case CS_EXCL_WAITING:
			window_release_exclusive(cs.map);
			break;
		case CS_EXCL_BUILT:
			cmap_writer_discard(&cs.writer);
			window_release_exclusive(cs.map);
			break;
		case CS_IDLE:
			cmap_pool_unreserve(cs.reserved);
			cs.reserved = 0;
			break;
	}
	cs.stage = CS_IDLE;
	if (cs.hdr_slot >= 0)
	{
		cmap_header_release(cs.hdr_slot);
		cs.hdr_slot = -1;
	}
	for (i = 0; i < cs.nops; i++)
	{
		if (DsaPointerIsValid(cs.ops[i]->blob))
		{
			cmap_blob_free(cs.ops[i]->blob);
			cs.ops[i]->blob = InvalidDsaPointer;
		}
	}
	for (i = 0; i < cs.ndropped; i++)
		if (cs.dropped[i].hdr_slot >= 0)
			cmap_header_release(cs.dropped[i].hdr_slot);

	immediate_cleanup();
}

/*
 * An immediate-mode write interrupted by an error: give back what it held.
 * Called at abort of the transaction or of the subtransaction (a PL/pgSQL
 * exception block, a savepoint) in which the error happened: the write ran
 * inside that one, and must not leave a window open past it.
 */
static void
immediate_cleanup(void)
{
	if (!imm.active)
		return;
	if (imm.writer != NULL)
		cmap_writer_discard(imm.writer);
	if (DsaPointerIsValid(imm.blob))
		cmap_blob_free(imm.blob);
	cmap_pool_unreserve(imm.reserved);
	if (imm.hdr_slot >= 0)
		cmap_header_release(imm.hdr_slot);
	if (imm.window)
		window_close(imm.map);
	if (imm.exclusive)
		window_release_exclusive(imm.map);
	MemSet(&imm, 0, sizeof(imm));
}

/* Forget all per-transaction state; pins end with the transaction. */
static void
commit_end(void)
{
	cmap_views_release_all();
	cmap_batch_reset();
	cs.stage = CS_IDLE;
	cs.map = NULL;
	cs.ops = NULL;
	cs.nops = 0;
	cs.cleared = false;
	cs.reserved = 0;
	cs.protecting = false;
	cs.hdr_slot = -1;
	cs.ndropped = 0;
}

/* ------------------------------------------------------------------------
 * Immediate mode
 * ------------------------------------------------------------------------
 */

static bool
bytes_equal(const char *a, Size alen, const char *b, Size blen)
{
	return alen == blen && memcmp(a, b, alen) == 0;
}

/*
 * Decide what an immediate operation does, given the latest version.
 * Returns whether it writes; may raise errors (nothing is changed yet).
 * For increments, value and vallen are set to the new number in numbuf.
 */
static bool
immediate_decide(CmapImmOp op, const CmapTree *tree, const char *key, int keylen,
				 const char *expected, Size explen, int64 delta,
				 CmapImmResult *res, const char **value, Size *vallen,
				 char *numbuf)
{
	CmapItem	item;

	if (op != CMAP_IMM_CLEAR && cmap_tree_lookup(tree, key, keylen, &item))
	{
		res->found = true;
		res->old = palloc(item.vallen + 1);
		memcpy(res->old, item.value, item.vallen);
		res->old[item.vallen] = '\0';
		res->oldlen = item.vallen;
	}
	switch (op)
	{
		case CMAP_IMM_STORE:
		case CMAP_IMM_SWAP:
			return true;
		case CMAP_IMM_DELETE:
			return res->found;
		case CMAP_IMM_LOAD_OR_STORE:
			return !res->found;
		case CMAP_IMM_CAS:
		case CMAP_IMM_CAD:
			return res->found && bytes_equal(res->old, res->oldlen, expected, explen);
		case CMAP_IMM_INCREMENT:
			{
				int64		v = res->found ?
					cmap_parse_int8(res->old, res->oldlen, key, keylen) : 0;

				res->number = cmap_add_int8(v, delta, key, keylen);
				snprintf(numbuf, 32, INT64_FORMAT, res->number);
				*value = numbuf;
				*vallen = strlen(numbuf);
				return true;
			}
		case CMAP_IMM_CLEAR:
			res->number = tree->count;
			return tree->count > 0;
	}
	return false;
}

/* Apply an immediate operation to a writer. */
static void
immediate_apply(CmapImmOp op, CmapWriter *w, const char *key, int keylen,
				const char *value, Size vallen)
{
	switch (op)
	{
		case CMAP_IMM_DELETE:
		case CMAP_IMM_CAD:
			cmap_writer_delete(w, key, keylen);
			break;
		case CMAP_IMM_CLEAR:
			cmap_writer_clear(w);
			break;
		default:
			if (DsaPointerIsValid(imm.blob) && op != CMAP_IMM_INCREMENT)
			{
				cmap_writer_put(w, key, keylen, NULL, 0, imm.blob);
				imm.blob = InvalidDsaPointer;	/* the tree owns it now */
			}
			else
				cmap_writer_put(w, key, keylen, value, vallen, InvalidDsaPointer);
			break;
	}
}

/*
 * Publish one write now, as its own version (cmapext.transactional = off).
 * The decision is taken against the latest version while no other commit
 * can publish (under the writer lock, or holding the exclusive window), so
 * it is atomic with respect to every other committer.  Errors before the
 * publish leave nothing behind (the abort callback cleans up imm).
 *
 * Normally the worst-case nodes are reserved and the write is applied under
 * the writer lock like a small commit.  When memory is too tight for the
 * worst case, the map is frozen with the exclusive window and the write is
 * built with exact memory use instead.
 */
void
cmap_immediate(CmapImmOp op, const char *key, int keylen,
			   const char *value, Size vallen,
			   const char *expected, Size explen,
			   int64 delta, CmapImmResult *res)
{
	CmapMap    *map;
	uint64		word;
	CmapHeader *base;
	CmapTree	tree;
	bool		write;
	bool		published = false;
	bool		exclusive;
	char		numbuf[32];

	MemSet(res, 0, sizeof(*res));
	cmap_attach();
	map = cmap_my_map;
	MemSet(&imm, 0, sizeof(imm));
	imm.active = true;
	imm.map = map;
	imm.hdr_slot = -1;
	imm.blob = InvalidDsaPointer;

	if (value != NULL && vallen > CMAP_INLINE_VALUE_MAX)
	{
		bool		oom;

		imm.blob = cmap_blob_alloc(value, vallen, &oom);
		if (!DsaPointerIsValid(imm.blob))
		{
			cmap_reclaim_now();
			cmap_pool_trim(0);
			imm.blob = cmap_blob_alloc(value, vallen, &oom);
			if (!DsaPointerIsValid(imm.blob))
				cmap_report_oom("a value", CMAP_BLOB_HDRSZ + vallen);
		}
	}
	exclusive = !reserve_small(map, 1, &imm.reserved);
	imm.hdr_slot = cmap_header_reserve();

	if (!exclusive)
	{
		uint64		wbloom[CMAP_BLOOM_WORDS];
		CmapWriter	w;

		MemSet(wbloom, 0, sizeof(wbloom));
		if (op == CMAP_IMM_CLEAR)
			bloom_fill(wbloom);
		else
			bloom_add(wbloom, hash_bytes((const unsigned char *) key, keylen));
		window_open(map, wbloom);
		imm.window = true;

		LWLockAcquire(map->writer_lock, LW_EXCLUSIVE);
		base = current_version(map, &word, &tree);
		write = immediate_decide(op, &tree, key, keylen, expected, explen, delta,
								 res, &value, &vallen, numbuf);
		if (write)
		{
			/* From here on nothing may fail: nodes come from the reservation. */
			cmap_writer_init(&w, map->index, CMAP_WORD_VERSION(word) + 1, &tree,
							 base->nodes, base->blob_bytes);
			w.may_fail = false;
			w.reserved = imm.reserved;
			imm.reserved = 0;
			immediate_apply(op, &w, key, keylen, value, vallen);
			published = cmap_commit_publish(map, &w, imm.hdr_slot);
		}
		LWLockRelease(map->writer_lock);
		if (write)
			cmap_writer_finish(&w);
		window_close(map);
		imm.window = false;
	}
	else
	{
		imm.exclusive = true;
		window_acquire_exclusive(map);

		/* nobody else can publish now: the current version is stable */
		base = current_version(map, &word, &tree);
		write = immediate_decide(op, &tree, key, keylen, expected, explen, delta,
								 res, &value, &vallen, numbuf);
		if (write)
		{
			CmapWriter *w = palloc0(sizeof(CmapWriter));

			cmap_writer_init(w, map->index, CMAP_WORD_VERSION(word) + 1, &tree,
							 base->nodes, base->blob_bytes);
			w->may_fail = true;	/* exact allocation; errors allowed */
			imm.writer = w;
			immediate_apply(op, w, key, keylen, value, vallen);
			LWLockAcquire(map->writer_lock, LW_EXCLUSIVE);
			published = cmap_commit_publish(map, w, imm.hdr_slot);
			LWLockRelease(map->writer_lock);
			imm.writer = NULL;
			cmap_writer_finish(w);
		}
		window_release_exclusive(map);
		imm.exclusive = false;
	}
	cmap_reclaim_maybe(map);

	if (published)
		imm.hdr_slot = -1;
	res->applied = published;

	/* release whatever was not used */
	if (DsaPointerIsValid(imm.blob))
		cmap_blob_free(imm.blob);
	cmap_pool_unreserve(imm.reserved);
	if (imm.hdr_slot >= 0)
		cmap_header_release(imm.hdr_slot);
	MemSet(&imm, 0, sizeof(imm));
}
