/*-------------------------------------------------------------------------
 *
 * cmap_snapshot.c
 *	  Publishing versions, pinning them, and deciding which pinned version a
 *	  read uses (the statement's or the transaction's view).
 *
 * The protocol (memory ordering: do not reorder these steps).
 *
 *	Publish (committer, holding map->writer_lock): fill the header and every
 *	node reachable from it with plain stores, pg_write_barrier(), then store
 *	the word (version << 16 | header slot) into map->current.
 *
 *	Pin (reader, no lock): load current, store it into a free entry of our
 *	own CmapProcSlot (a cache line only we write), pg_memory_barrier(), load
 *	current again; if it changed, retry with the new word.  Once the two
 *	loads agree, pg_read_barrier() and read the header and the tree.
 *
 *	Unpin: pg_memory_barrier() (every read of the tree is done), then store
 *	0 into the slot entry.
 *
 *	Reclaim (cmap_reclaim.c): take the map's writer lock (which orders us
 *	after the publish that retired an object), detach the retire list,
 *	pg_memory_barrier(), read every slot.
 *
 * Why it is safe: a reader that validated word w stored w, fenced, and then
 * still saw w as current, so any version superseding w was published after
 * the reader's store became visible; the reclaimer only frees what such a
 * later version retired, and it fences before reading the slots, so it sees
 * the reader's announcement (store-fence-load against store-fence-load:
 * one of the two loads must see the other side's store).  A reader whose
 * re-check fails never dereferences the old word.  Words embed the version,
 * so a recycled header slot never produces an equal word (no ABA).
 *
 * Readers take no lock and write only their own slot.  Several views of the
 * same version share one slot entry through a local reference count.
 *
 * Which version a read uses:
 *	- REPEATABLE READ / SERIALIZABLE: one version for the transaction, pinned
 *	  by the first query of the transaction (ExecutorStart) or the first map
 *	  read, released at transaction end;
 *	- READ COMMITTED: one version per statement, keyed by the portal that
 *	  runs it (ActivePortal), pinned at the statement's first map read and
 *	  released when that portal's resource owner is released (statement end,
 *	  cursor close) or at transaction end.  Statements run inside functions
 *	  share the calling statement's portal and hence its version;
 *	- iterators (cmap_iterate) take an extra reference so that the pin lives
 *	  exactly as long as the scan; error paths are covered by the
 *	  subtransaction and transaction callbacks, and backend exit by a
 *	  before_shmem_exit callback.
 *
 * Copyright (c) 2026, cmapext developers
 * Released under the PostgreSQL License (see LICENSE).
 *
 * IDENTIFICATION
 *	  src/cmap_snapshot.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/parallel.h"
#include "access/xact.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "tcop/pquery.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "cmapext.h"
#include "cmap_shmem.h"
#include "cmap_snapshot.h"

/* Local mirror of this process's pin slot. */
typedef struct LocalPin
{
	uint64		word;			/* 0 when the entry is free */
	int			refcount;
	CmapMap    *map;
	CmapView	view;
} LocalPin;

/* A statement's view: the pin used by reads run by one portal. */
typedef struct StmtPin
{
	Portal		portal;
	ResourceOwner owner;
	int			pin;
} StmtPin;

/* An iterator's extra reference. */
typedef struct IterRef
{
	int			pin;			/* -1 when free */
	SubTransactionId subid;
} IterRef;

static LocalPin local_pins[CMAP_MAX_PINS_PER_PROC];
static int	npins_held = 0;		/* entries with refcount > 0 */

#define MAX_STMT_PINS	64
static StmtPin stmt_pins[MAX_STMT_PINS];
static int	n_stmt_pins = 0;

#define MAX_ITER_REFS	256
static IterRef iter_refs[MAX_ITER_REFS];
static int	n_iter_refs = 0;	/* high-water mark of used entries */

static int	xact_pin = -1;		/* transaction-scoped pin, or -1 */

/*
 * The portal of the outermost statement being executed.  PL/pgSQL runs
 * FOR loops and explicit cursors through portals of their own, nested in
 * the calling statement's execution: their reads belong to the calling
 * statement.  A FETCH from an SQL-level cursor does not count as a
 * statement of its own here, so the cursor keeps its own version.
 */
static int	stmt_depth = 0;
static Portal outer_portal = NULL;
static int	latest_pin = -1;	/* see cmap_view_latest(), or -1 */

static bool callbacks_registered = false;

static int	pin_current(CmapMap *map);
static void unpin(int i);
static void cmap_snapshot_exit(int code, Datum arg);
static void cmap_resowner_release(ResourceReleasePhase phase, bool isCommit,
								  bool isTopLevel, void *arg);

/*
 * Called once per backend when it attaches: start with a clean slot (the
 * previous owner of this PGPROC cleared it, but be defensive), and register
 * the cleanup callbacks.
 */
void
cmap_snapshot_attach(void)
{
	CmapProcSlot *slot = &cmap_shared->slots[cmap_my_procno];
	int			i;

	for (i = 0; i < CMAP_MAX_PINS_PER_PROC; i++)
	{
		pg_atomic_write_u64(&slot->pins[i], 0);
		local_pins[i].word = 0;
		local_pins[i].refcount = 0;
	}
	for (i = 0; i < MAX_ITER_REFS; i++)
		iter_refs[i].pin = -1;
	npins_held = 0;
	n_stmt_pins = 0;
	n_iter_refs = 0;
	xact_pin = -1;
	latest_pin = -1;

	if (!callbacks_registered)
	{
		/*
		 * before_shmem_exit, not on_shmem_exit: the slot must be cleared while
		 * this process still counts as attached.
		 */
		before_shmem_exit(cmap_snapshot_exit, (Datum) 0);
		RegisterResourceReleaseCallback(cmap_resowner_release, NULL);
		callbacks_registered = true;
	}
}

/*
 * Pin the current version of a map and return the local pin index.
 * See the protocol in the file header; the barriers are load-bearing.
 */
static int
pin_current(CmapMap *map)
{
	CmapProcSlot *slot = &cmap_shared->slots[cmap_my_procno];
	uint64		w = pg_atomic_read_u64(&map->current);
	int			i,
				free_i = -1;
	CmapHeader *hdr;
	LocalPin   *lp;

	for (;;)
	{
		/* Reuse an entry that already pins this word. */
		for (i = 0; i < cmap_shared->pins_per_proc; i++)
		{
			if (local_pins[i].refcount > 0 && local_pins[i].word == w)
			{
				if (free_i >= 0 && local_pins[free_i].refcount == 0)
					pg_atomic_write_u64(&slot->pins[free_i], 0);
				local_pins[i].refcount++;
				return i;
			}
			if (free_i < 0 && local_pins[i].refcount == 0)
				free_i = i;
		}
		if (free_i < 0)
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("too many cmapext snapshots pinned by this session"),
					 errdetail("A session can pin at most %d different map versions at once.",
							   cmap_shared->pins_per_proc),
					 errhint("Close open cursors over cmapext functions.")));

		pg_atomic_write_u64(&slot->pins[free_i], w);	/* announce */
		pg_memory_barrier();	/* announce before re-checking */
		{
			uint64		w2 = pg_atomic_read_u64(&map->current);

			if (w2 == w)
				break;			/* validated */
			w = w2;				/* lost a race with a commit: retry */
		}
	}
	pg_read_barrier();			/* header and nodes after the validated word */

	hdr = &cmap_shared->headers[CMAP_WORD_SLOT(w)];
	lp = &local_pins[free_i];
	lp->word = w;
	lp->refcount = 1;
	lp->map = map;
	lp->view.word = w;
	lp->view.version = CMAP_WORD_VERSION(w);
	lp->view.tree = cmap_header_tree(hdr);
	lp->view.pin = free_i;
	Assert(hdr->version == lp->view.version);
	npins_held++;
	return free_i;
}

static void
unpin(int i)
{
	LocalPin   *lp = &local_pins[i];

	Assert(lp->refcount > 0);
	if (--lp->refcount > 0)
		return;

	pg_memory_barrier();		/* all reads of this version happen before */
	pg_atomic_write_u64(&cmap_shared->slots[cmap_my_procno].pins[i], 0);
	npins_held--;

	/* An old version went unpinned: its memory may now be reclaimable. */
	if (lp->word != pg_atomic_read_u64(&lp->map->current))
		cmap_reclaim_maybe(lp->map);
	lp->word = 0;
}

/*
 * The view the current read uses; see the file header for the rules.
 */
const CmapView *
cmap_view_get(void)
{
	Portal		portal = stmt_depth > 0 && outer_portal != NULL ? outer_portal : ActivePortal;
	int			i;

	cmap_attach();

	if (IsolationUsesXactSnapshot() || portal == NULL || portal->resowner == NULL)
	{
		if (xact_pin < 0)
			xact_pin = pin_current(cmap_my_map);
		return &local_pins[xact_pin].view;
	}

	for (i = n_stmt_pins - 1; i >= 0; i--)
	{
		if (stmt_pins[i].portal == portal && stmt_pins[i].owner == portal->resowner)
			return &local_pins[stmt_pins[i].pin].view;
	}
	if (n_stmt_pins >= MAX_STMT_PINS)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many open statements read cmapext in this session"),
				 errhint("Close open cursors over cmapext functions.")));
	i = pin_current(cmap_my_map);
	stmt_pins[n_stmt_pins].portal = portal;
	stmt_pins[n_stmt_pins].owner = portal->resowner;
	stmt_pins[n_stmt_pins].pin = i;
	n_stmt_pins++;
	return &local_pins[i].view;
}

/*
 * The latest committed version, pinned until the end of the transaction (or
 * until a later call finds a newer one).  Used where a decision must be
 * taken on the newest data rather than on the statement's snapshot:
 * conditional operations in autocommit, and commit-time validation.
 * Callers must copy what they read before calling again.
 */
const CmapView *
cmap_view_latest(void)
{
	uint64		w;

	cmap_attach();
	w = pg_atomic_read_u64(&cmap_my_map->current);
	if (latest_pin >= 0)
	{
		if (local_pins[latest_pin].word == w)
			return &local_pins[latest_pin].view;
		unpin(latest_pin);
		latest_pin = -1;
	}
	latest_pin = pin_current(cmap_my_map);
	return &local_pins[latest_pin].view;
}

/* Take an extra reference on a view's pin, owned by an iterator. */
int
cmap_view_ref(const CmapView *view)
{
	int			i;
	int			found = -1;

	for (i = 0; i < MAX_ITER_REFS && found < 0; i++)
		if (iter_refs[i].pin < 0)
			found = i;
	if (found < 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many cmapext iterations open in this session"),
				 errhint("Close open cursors over cmapext functions.")));
	i = found;
	local_pins[view->pin].refcount++;
	iter_refs[i].pin = view->pin;
	iter_refs[i].subid = GetCurrentSubTransactionId();
	if (i >= n_iter_refs)
		n_iter_refs = i + 1;
	return i;
}

void
cmap_view_unref(int ref)
{
	if (ref < 0 || ref >= MAX_ITER_REFS || iter_refs[ref].pin < 0)
		return;					/* already released by an abort */
	unpin(iter_refs[ref].pin);
	iter_refs[ref].pin = -1;
}

/*
 * Drop iterator references taken inside an aborted subtransaction; their
 * scans are gone and their end-of-scan callbacks will never run.
 */
void
cmap_views_subxact_abort(SubTransactionId subid)
{
	int			i;

	for (i = 0; i < n_iter_refs; i++)
	{
		if (iter_refs[i].pin >= 0 && iter_refs[i].subid >= subid)
		{
			unpin(iter_refs[i].pin);
			iter_refs[i].pin = -1;
		}
	}
}

/*
 * Release every pin: end of transaction (commit or abort) and backend exit.
 * Nothing a transaction pinned survives it: holdable cursors are
 * materialised before commit, so their scans have ended by then.
 */
void
cmap_views_release_all(void)
{
	int			i;

	if (npins_held == 0 && n_stmt_pins == 0 && xact_pin < 0 && latest_pin < 0)
		return;
	n_stmt_pins = 0;
	xact_pin = -1;
	latest_pin = -1;
	for (i = 0; i < n_iter_refs; i++)
		iter_refs[i].pin = -1;
	n_iter_refs = 0;
	for (i = 0; i < CMAP_MAX_PINS_PER_PROC; i++)
	{
		if (local_pins[i].refcount > 0)
		{
			local_pins[i].refcount = 1;
			unpin(i);
		}
	}
	Assert(npins_held == 0);
}

/*
 * Resource owner callback: a portal's owner is being released, so its
 * statement is over; drop the statement's view.
 */
static void
cmap_resowner_release(ResourceReleasePhase phase, bool isCommit,
					  bool isTopLevel, void *arg)
{
	int			i;

	if (phase != RESOURCE_RELEASE_AFTER_LOCKS || n_stmt_pins == 0)
		return;
	for (i = n_stmt_pins - 1; i >= 0; i--)
	{
		if (stmt_pins[i].owner == CurrentResourceOwner)
		{
			int			pin = stmt_pins[i].pin;

			stmt_pins[i] = stmt_pins[n_stmt_pins - 1];
			n_stmt_pins--;
			unpin(pin);
		}
	}
}

static void
cmap_snapshot_exit(int code, Datum arg)
{
	if (cmap_shared == NULL || cmap_my_procno < 0)
		return;
	cmap_views_release_all();
}

/*
 * Executor and utility hooks call these around every statement execution;
 * see outer_portal.  The caller restores the depth on error (PG_FINALLY).
 */
void
cmap_statement_enter(void)
{
	if (stmt_depth++ == 0)
		outer_portal = ActivePortal;
}

void
cmap_statement_leave(void)
{
	if (--stmt_depth == 0)
		outer_portal = NULL;
}

/*
 * Under REPEATABLE READ and SERIALIZABLE, fix the map version when
 * PostgreSQL fixes the transaction snapshot (its first query), so that map
 * reads and table reads of the transaction describe the same moment as
 * closely as possible.  Only for databases that already have a map.
 */
void
cmap_snapshot_executor_start(void)
{
	if (xact_pin >= 0 || !IsolationUsesXactSnapshot() || IsParallelWorker() ||
		cmap_shared == NULL || !IsTransactionState())
		return;
	if (cmap_lookup_map(MyDatabaseId) == NULL)
		return;
	cmap_attach();
	xact_pin = pin_current(cmap_my_map);
}

/*
 * Publish a filled header as the map's new current version.  Caller holds
 * map->writer_lock.  Must not fail: it runs in the COMMIT step.
 */
void
cmap_publish(CmapMap *map, int hdr_slot)
{
	uint64		old = pg_atomic_read_u64(&map->current);
	CmapHeader *hdr = &cmap_shared->headers[hdr_slot];
	int			old_slot = CMAP_WORD_SLOT(old);

	Assert(LWLockHeldByMeInMode(map->writer_lock, LW_EXCLUSIVE));
	/* +1 per commit; a restored map jumps from 0 to its saved version */
	Assert(hdr->version > CMAP_WORD_VERSION(old) || old == 0);

	cmap_header_mark_published(hdr_slot);
	pg_write_barrier();			/* header and nodes before the word */
	pg_atomic_write_u64(&map->current, CMAP_WORD(hdr->version, hdr_slot));

	/* the superseded header waits on the map's list until unpinned */
	if (old != 0)
	{
		cmap_shared->headers[old_slot].next_free = map->superseded_head;
		map->superseded_head = old_slot;
	}
	pg_atomic_write_u32(&map->height_hint, hdr->height);
	pg_atomic_fetch_add_u64(&map->commits, 1);
}

/*
 * Wake the reclaimer early if a map's garbage has grown past a threshold
 * since its last pass; otherwise its periodic pass (every second) is soon
 * enough.  Waking it on every commit would cost a signal per commit and
 * keep a core busy; counting all retired bytes instead of new ones would do
 * the same while a long reader pins old versions (each pass re-checks what
 * the pin keeps).  Racy reads are fine: this is only a hint.
 */
void
cmap_reclaim_maybe(CmapMap *map)
{
	uint64		threshold = Max(UINT64CONST(1) << 20, cmap_shared->dsa_size / 64);

	if (map->retired_new >= threshold)
		cmap_reclaim_request();
}

/*
 * Wake the reclaimer.  The flag is only written on a 0 -> 1 transition, so
 * busy readers do not keep writing a shared cache line.
 */
void
cmap_reclaim_request(void)
{
	if (pg_atomic_read_u32(&cmap_shared->reclaim_requested) != 0)
		return;
	if (pg_atomic_exchange_u32(&cmap_shared->reclaim_requested, 1) == 0)
	{
		Latch	   *latch = cmap_shared->reclaimer_latch;

		if (latch != NULL)
			SetLatch(latch);
	}
}
