/*-------------------------------------------------------------------------
 *
 * cmap_batch.c
 *	  The backend-local batch of a transaction's map writes.
 *
 * Writes touch no shared memory until commit (cmap_commit.c): they only
 * record, per key, what commit must do (put, delete, add a delta) and, for
 * conditional operations, what the decision depended on.  A hash table finds
 * a key's entry; an array keeps entries in creation order, which is already
 * the commit order when keys arrive ascending (the common bulk-load case),
 * and is sorted once at commit otherwise.
 *
 * Savepoints.  Every change made inside a subtransaction first saves the
 * entry's previous state in an undo log tagged with the subtransaction id,
 * unless the entry was already changed in that same subtransaction.
 * Aborting subtransaction S undoes, newest first, every record with id >= S:
 * ids grow monotonically, so those are exactly the changes made in S and in
 * its (committed) children.  Changes made at the top level need no undo:
 * a top-level abort throws the whole batch away.  cmap_clear() inside a
 * subtransaction saves the whole table the same way.
 *
 * Reads by the transaction itself go through cmap_read(), which lays the
 * batch over the statement's pinned snapshot (read-your-writes).
 *
 * All memory lives in one context that is reset at the end of every
 * transaction (commit, abort or prepare: cmap_commit.c calls
 * cmap_batch_reset()).
 *
 * Copyright (c) 2026, cmapext developers
 * Released under the PostgreSQL License (see LICENSE).
 *
 * IDENTIFICATION
 *	  src/cmap_batch.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "common/hashfn.h"
#include "common/int.h"
#include "port/pg_bswap.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "cmap_batch.h"
#include "cmap_tree.h"

/* simplehash over entries, keyed by key bytes (hash precomputed in entry) */
typedef struct BatchSlot
{
	CmapEntry  *entry;
	uint32		hash;
	char		status;
} BatchSlot;

#define SH_PREFIX			cmap_bh
#define SH_ELEMENT_TYPE		BatchSlot
#define SH_KEY_TYPE			CmapEntry *
#define SH_KEY				entry
#define SH_HASH_KEY(tb, k)	((k)->hash)
#define SH_EQUAL(tb, a, b)	((a)->keylen == (b)->keylen && \
							 memcmp((a)->key, (b)->key, (a)->keylen) == 0)
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a)	((a)->hash)
#define SH_SCOPE			static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

/* A saved state, for rollback to savepoint. */
typedef struct UndoRec
{
	SubTransactionId subid;
	CmapEntry  *entry;			/* NULL for a cmap_clear() */
	bool		created;		/* the change created the entry */
	CmapEntryState old;
	/* cmap_clear(): the table as it was */
	cmap_bh_hash *old_hash;
	CmapEntry **old_entries;
	int			old_nentries;
	int			old_maxentries;
	bool		old_sorted;
	bool		old_cleared;
	CmapEntry  *old_last;
} UndoRec;

typedef struct Batch
{
	MemoryContext cxt;
	cmap_bh_hash *hash;
	CmapEntry **entries;		/* creation order */
	int			nentries;
	int			maxentries;
	bool		sorted;			/* entries[] is in ascending key order */
	CmapEntry  *last;			/* most recently created entry */
	bool		cleared;		/* cmap_clear() ran: the base is empty */
	bool		logmode;		/* append-only, no hash table yet (see below) */

	/* bump allocator for entries */
	char	   *arena;
	Size		arena_left;
	Size		arena_chunk;	/* size of the next chunk (grows) */

	/* undo log */
	UndoRec    *undo;
	int			nundo;
	int			maxundo;

	/* cmap_count() cache: delta over the snapshot of count_version */
	bool		count_valid;
	uint64		count_version;
	int64		count_delta;
	CmapEntry **uncounted;
	int			nuncounted;
	int			maxuncounted;
} Batch;

static Batch *batch = NULL;

/*
 * The batch's memory context lives as long as the backend and is reset at
 * the end of every transaction that used it: cheaper than creating and
 * deleting one per transaction (autocommit writes are the common case).
 */
static MemoryContext batch_cxt = NULL;

#define ARENA_CHUNK_MIN	(2 * 1024)
#define ARENA_CHUNK_MAX	(64 * 1024)

static Batch *batch_get(void);
static void *arena_alloc(Size size);
static void batch_save(CmapEntry *e, bool created);
static void batch_value_replace(CmapEntry *e, const char *value, Size vallen);
static void count_note_change(CmapEntry *e, uint8 oldop);
static void batch_compact(void);
static void batch_leave_logmode(void);
static int	sort_entries(CmapEntry **entries, int n, bool dedup);

static inline int
keycmp(const char *a, int alen, const char *b, int blen)
{
	int			r = memcmp(a, b, Min(alen, blen));

	if (r != 0)
		return r;
	return (alen > blen) - (alen < blen);
}

/* What an entry adds to the count of its snapshot. */
static inline int
count_contrib(uint8 op, bool base_exists)
{
	if (op == CMAP_OP_PUT || op == CMAP_OP_INCR)
		return base_exists ? 0 : 1;
	if (op == CMAP_OP_DEL)
		return base_exists ? -1 : 0;
	return 0;					/* NONE, CHECK: no write */
}

static Batch *
batch_get(void)
{
	if (batch != NULL)
		return batch;
	if (batch_cxt == NULL)
		batch_cxt = AllocSetContextCreate(TopMemoryContext, "cmapext batch",
										  ALLOCSET_DEFAULT_SIZES);
	batch = MemoryContextAllocZero(batch_cxt, sizeof(Batch));
	batch->cxt = batch_cxt;
	batch->maxentries = 16;
	batch->entries = MemoryContextAlloc(batch_cxt, sizeof(CmapEntry *) * batch->maxentries);
	batch->sorted = true;
	batch->arena_chunk = ARENA_CHUNK_MIN;
	/* log mode is only valid while no subtransaction is active */
	batch->logmode = (GetCurrentSubTransactionId() == TopSubTransactionId);
	if (!batch->logmode)
		batch->hash = cmap_bh_create(batch_cxt, 16, NULL);
	return batch;
}

bool
cmap_batch_active(void)
{
	return batch != NULL && (batch->nentries > 0 || batch->cleared);
}

bool
cmap_batch_cleared(void)
{
	return batch != NULL && batch->cleared;
}

/* Does any entry depend on the base (conditional operation or increment)? */
bool
cmap_batch_has_deps(void)
{
	int			i;

	if (batch == NULL)
		return false;
	for (i = 0; i < batch->nentries; i++)
	{
		CmapEntry  *e = batch->entries[i];

		if (e->st.op != CMAP_OP_NONE &&
			(e->st.dep != CMAP_DEP_NONE || e->st.op == CMAP_OP_INCR))
			return true;
	}
	return false;
}

static void *
arena_alloc(Size size)
{
	void	   *p;

	size = MAXALIGN(size);
	if (size > ARENA_CHUNK_MAX / 4)
		return MemoryContextAlloc(batch->cxt, size);
	if (batch->arena_left < size)
	{
		while (batch->arena_chunk < size * 4)
			batch->arena_chunk *= 2;
		batch->arena = MemoryContextAlloc(batch->cxt, batch->arena_chunk);
		batch->arena_left = batch->arena_chunk;
		batch->arena_chunk = Min(batch->arena_chunk * 2, ARENA_CHUNK_MAX);
	}
	p = batch->arena;
	batch->arena += size;
	batch->arena_left -= size;
	return p;
}

/* Find the pending entry of a key, or NULL. */
CmapEntry *
cmap_batch_lookup(const char *key, int keylen)
{
	CmapEntry	probe;
	BatchSlot  *slot;

	if (batch == NULL || batch->nentries == 0)
		return NULL;
	batch_leave_logmode();
	probe.key = key;
	probe.keylen = keylen;
	probe.hash = hash_bytes((const unsigned char *) key, keylen);
	slot = cmap_bh_lookup_hash(batch->hash, &probe, probe.hash);
	if (slot == NULL || slot->entry->st.op == CMAP_OP_NONE)
		return NULL;
	return slot->entry;
}

/*
 * Find or create the entry of a key, ready to be changed by one of the
 * cmap_batch_set_* functions.  A created entry has op NONE until then.
 */
CmapEntry *
cmap_batch_entry(const char *key, int keylen)
{
	CmapEntry	probe;
	BatchSlot  *slot;
	bool		found;
	CmapEntry  *e;
	char	   *kcopy;

	batch_get();
	probe.key = key;
	probe.keylen = keylen;
	probe.hash = hash_bytes((const unsigned char *) key, keylen);
	if (batch->logmode)
	{
		/* append; a repeated key is resolved when the log is sorted */
		slot = NULL;
		found = false;
	}
	else
	{
		slot = cmap_bh_insert_hash(batch->hash, &probe, probe.hash, &found);
		if (found)
			return slot->entry;
	}

	e = arena_alloc(sizeof(CmapEntry) + keylen);
	kcopy = (char *) e + sizeof(CmapEntry);
	memcpy(kcopy, key, keylen);
	MemSet(e, 0, sizeof(CmapEntry));
	e->key = kcopy;
	e->keylen = keylen;
	e->hash = probe.hash;
	e->blob = InvalidDsaPointer;
	e->st.op = CMAP_OP_NONE;
	e->st.subid = GetCurrentSubTransactionId();
	e->st.mirror_cid = InvalidCommandId;
	if (slot != NULL)
		slot->entry = e;

	if (batch->nentries >= batch->maxentries)
	{
		batch->maxentries *= 2;
		batch->entries = repalloc_huge(batch->entries,
									   sizeof(CmapEntry *) * batch->maxentries);
	}
	batch->entries[batch->nentries++] = e;
	/* not strictly ascending: needs sorting (and in log mode, deduplication) */
	if (batch->sorted && batch->last != NULL &&
		keycmp(key, keylen, batch->last->key, batch->last->keylen) <= 0)
		batch->sorted = false;
	batch->last = e;

	/* remember that the entry did not exist, for rollback to savepoint */
	if (GetCurrentSubTransactionId() != TopSubTransactionId)
		batch_save(e, true);
	if (batch->count_valid)
	{
		if (batch->nuncounted >= batch->maxuncounted)
		{
			batch->maxuncounted = Max(64, batch->maxuncounted * 2);
			batch->uncounted = batch->uncounted ?
				repalloc_huge(batch->uncounted, sizeof(CmapEntry *) * batch->maxuncounted) :
				MemoryContextAlloc(batch->cxt, sizeof(CmapEntry *) * batch->maxuncounted);
		}
		batch->uncounted[batch->nuncounted++] = e;
	}
	return e;
}

/*
 * Save an entry's state before its first change in the current
 * subtransaction (see the file header).
 */
static void
batch_save(CmapEntry *e, bool created)
{
	SubTransactionId cur = GetCurrentSubTransactionId();
	UndoRec    *u;

	if (cur == TopSubTransactionId)
	{
		e->st.subid = cur;
		return;
	}
	if (!created && e->st.subid == cur)
		return;
	if (batch->nundo >= batch->maxundo)
	{
		batch->maxundo = Max(64, batch->maxundo * 2);
		batch->undo = batch->undo ?
			repalloc_huge(batch->undo, sizeof(UndoRec) * batch->maxundo) :
			MemoryContextAlloc(batch->cxt, sizeof(UndoRec) * batch->maxundo);
	}
	u = &batch->undo[batch->nundo++];
	MemSet(u, 0, sizeof(UndoRec));
	u->subid = cur;
	u->entry = e;
	u->created = created;
	u->old = e->st;
	e->st.subid = cur;
	/* the saved state keeps its value buffer; the entry gets a new one */
	e->st.value = NULL;
	e->st.vallen = 0;
	e->st.valcap = 0;
	e->st.val_palloced = false;
}

/* Put a copy of value into the entry's buffer (reusing it when possible). */
static void
batch_value_replace(CmapEntry *e, const char *value, Size vallen)
{
	if (e->st.value != NULL && e->st.valcap >= vallen)
	{
		memcpy(e->st.value, value, vallen);
		e->st.vallen = vallen;
		return;
	}
	if (e->st.value != NULL && e->st.val_palloced)
		pfree(e->st.value);
	if (e->st.value == NULL && vallen <= 1024)
	{
		/* a first small value: from the arena, no separate allocation */
		e->st.value = arena_alloc(Max(vallen, 1));
		e->st.val_palloced = false;
	}
	else
	{
		e->st.value = MemoryContextAllocHuge(batch->cxt, Max(vallen, 1));
		e->st.val_palloced = true;
	}
	e->st.valcap = vallen;
	memcpy(e->st.value, value, vallen);
	e->st.vallen = vallen;
}

static void
count_note_change(CmapEntry *e, uint8 oldop)
{
	if (batch->count_valid && e->counted)
		batch->count_delta += count_contrib(e->st.op, e->base_exists) -
			count_contrib(oldop, e->base_exists);
}

void
cmap_batch_set_put(CmapEntry *e, const char *value, Size vallen)
{
	uint8		oldop = e->st.op;

	batch_save(e, false);
	/* a dependency recorded earlier stays: the transaction did read the key */
	e->st.op = CMAP_OP_PUT;
	e->st.mirror_cid = InvalidCommandId;
	e->st.delta = 0;
	batch_value_replace(e, value, vallen);
	count_note_change(e, oldop);
}

void
cmap_batch_set_delete(CmapEntry *e)
{
	uint8		oldop = e->st.op;

	batch_save(e, false);
	e->st.op = CMAP_OP_DEL;
	e->st.delta = 0;
	if (e->st.value != NULL && e->st.val_palloced)
		pfree(e->st.value);
	e->st.value = NULL;
	e->st.vallen = e->st.valcap = 0;
	e->st.val_palloced = false;
	count_note_change(e, oldop);
}

/*
 * Record an increment.  On top of a pending PUT the caller has already
 * computed the new value and uses set_put instead; this is for keys whose
 * base value is only known at commit.
 */
void
cmap_batch_set_incr(CmapEntry *e, CmapDelta delta)
{
	uint8		oldop = e->st.op;

	/* increments accumulate per key: needs the hash table, not the log */
	batch_leave_logmode();

	batch_save(e, false);
	e->st.op = CMAP_OP_INCR;
	e->st.delta = delta;
	count_note_change(e, oldop);
}

/* Record what a conditional operation's decision depended on. */
void
cmap_batch_set_dep(CmapEntry *e, uint8 dep, uint64 version, uint64 view)
{
	uint8		oldop = e->st.op;

	/*
	 * A dependency must survive later writes of the key, which in log mode
	 * would supersede this entry: leave log mode (e, just appended, is the
	 * entry that survives).
	 */
	batch_leave_logmode();

	batch_save(e, false);

	/*
	 * The first read decides: if a later read of the key sees another
	 * version, the key changed in between and the first check will fail at
	 * commit, as it must.
	 */
	if (e->st.dep == CMAP_DEP_NONE)
	{
		e->st.dep = dep;
		e->st.dep_version = version;
		e->st.dep_view = view;
	}
	if (e->st.op == CMAP_OP_NONE)
		e->st.op = CMAP_OP_CHECK;
	count_note_change(e, oldop);
}

/*
 * cmap_clear(): forget every pending entry and remember that the map is to
 * be emptied first at commit.
 */
void
cmap_batch_clear(void)
{
	SubTransactionId cur = GetCurrentSubTransactionId();
	CmapEntry **deps = NULL;
	int			ndeps = 0;
	int			i;

	batch_get();
	batch_leave_logmode();

	/*
	 * What earlier conditional operations read must still be validated at
	 * commit: remember those entries, to carry them over as validation-only
	 * entries.
	 */
	for (i = 0; i < batch->nentries; i++)
	{
		CmapEntry  *e = batch->entries[i];

		if (e->st.op == CMAP_OP_NONE || e->st.dep == CMAP_DEP_NONE)
			continue;
		if (deps == NULL)
			deps = palloc(sizeof(CmapEntry *) * batch->nentries);
		deps[ndeps++] = e;
	}

	if (cur != TopSubTransactionId)
	{
		UndoRec    *u;

		if (batch->nundo >= batch->maxundo)
		{
			batch->maxundo = Max(64, batch->maxundo * 2);
			batch->undo = batch->undo ?
				repalloc_huge(batch->undo, sizeof(UndoRec) * batch->maxundo) :
				MemoryContextAlloc(batch->cxt, sizeof(UndoRec) * batch->maxundo);
		}
		u = &batch->undo[batch->nundo++];
		MemSet(u, 0, sizeof(UndoRec));
		u->subid = cur;
		u->entry = NULL;
		u->old_hash = batch->hash;
		u->old_entries = batch->entries;
		u->old_nentries = batch->nentries;
		u->old_maxentries = batch->maxentries;
		u->old_sorted = batch->sorted;
		u->old_cleared = batch->cleared;
		u->old_last = batch->last;
		batch->hash = cmap_bh_create(batch->cxt, 16, NULL);
		batch->maxentries = 16;
		batch->entries = MemoryContextAlloc(batch->cxt, sizeof(CmapEntry *) * batch->maxentries);
	}
	else
	{
		/* at top level nothing can bring the old entries back */
		if (batch->hash != NULL)
			cmap_bh_reset(batch->hash);
		batch->nundo = 0;
	}
	batch->nentries = 0;
	batch->sorted = true;
	batch->last = NULL;
	batch->cleared = true;
	batch->count_valid = false;

	for (i = 0; i < ndeps; i++)
	{
		CmapEntry  *e = cmap_batch_entry(deps[i]->key, deps[i]->keylen);

		e->st.op = CMAP_OP_CHECK;
		e->st.dep = deps[i]->st.dep;
		e->st.dep_version = deps[i]->st.dep_version;
		e->st.dep_view = deps[i]->st.dep_view;
	}
	if (deps != NULL)
		pfree(deps);
}

/*
 * Rollback to savepoint / exception block: undo every change made in
 * subtransaction subid or its children.
 */
void
cmap_batch_subxact_abort(SubTransactionId subid)
{
	if (batch == NULL)
		return;
	while (batch->nundo > 0 && batch->undo[batch->nundo - 1].subid >= subid)
	{
		UndoRec    *u = &batch->undo[--batch->nundo];

		if (u->entry == NULL)
		{
			batch->hash = u->old_hash;
			batch->entries = u->old_entries;
			batch->nentries = u->old_nentries;
			batch->maxentries = u->old_maxentries;
			batch->sorted = u->old_sorted;
			batch->cleared = u->old_cleared;
			batch->last = u->old_last;
		}
		else if (u->created)
		{
			u->entry->st = u->old;
			u->entry->st.op = CMAP_OP_NONE;
			u->entry->st.dep = CMAP_DEP_NONE;
			cmap_bh_delete(batch->hash, u->entry);
		}
		else
			u->entry->st = u->old;
	}

	batch_compact();
	batch->count_valid = false;
}

/*
 * Drop entries whose op is NONE (created, then rolled back) from both the
 * array and the hash table, so that the two always agree.
 */
static void
batch_compact(void)
{
	int			i,
				j = 0;

	for (i = 0; i < batch->nentries; i++)
	{
		CmapEntry  *e = batch->entries[i];

		if (e->st.op == CMAP_OP_NONE)
		{
			BatchSlot  *slot = batch->logmode ? NULL : cmap_bh_lookup(batch->hash, e);

			if (slot != NULL && slot->entry == e)
				cmap_bh_delete_item(batch->hash, slot);
			continue;
		}
		batch->entries[j++] = e;
	}
	batch->nentries = j;
	batch->last = j > 0 ? batch->entries[j - 1] : NULL;
}

/* Forget the batch (end of transaction). */
void
cmap_batch_reset(void)
{
	if (batch != NULL)
	{
		batch = NULL;
		MemoryContextReset(batch_cxt);
	}
}

/*
 * Sorting the batch at commit.  Entries are sorted through an array of
 * (abbreviated key, entry) pairs: the first 8 key bytes as a big-endian
 * integer decide most comparisons without touching the entries.  Text has
 * no zero bytes, so padding short keys with zeros keeps byte order.
 */
typedef struct SortItem
{
	uint64		abbrev;
	CmapEntry  *e;
	int			seq;			/* position before sorting: later writes win */
} SortItem;

static inline uint64
abbrev_key(const char *key, int keylen)
{
	unsigned char buf[8] = {0};
	uint64		v;

	memcpy(buf, key, Min(keylen, 8));
	memcpy(&v, buf, 8);
	return pg_ntoh64(v);
}

static inline int
sortitem_cmp(const SortItem *a, const SortItem *b)
{
	int			c;

	if (a->abbrev != b->abbrev)
		return a->abbrev < b->abbrev ? -1 : 1;
	c = keycmp(a->e->key, a->e->keylen, b->e->key, b->e->keylen);
	if (c != 0)
		return c;
	return (a->seq > b->seq) - (a->seq < b->seq);
}

#define ST_SORT sort_items
#define ST_ELEMENT_TYPE SortItem
#define ST_COMPARE(a, b) sortitem_cmp(a, b)
#define ST_SCOPE static
#define ST_DEFINE
#include "lib/sort_template.h"

/*
 * Sort entries by key; with dedup, keep only the last write of each key
 * (log mode).  Returns the new number of entries.
 */
static int
sort_entries(CmapEntry **entries, int n, bool dedup)
{
	SortItem   *items = palloc_extended(sizeof(SortItem) * Max(n, 1), MCXT_ALLOC_HUGE);
	int			i,
				j = 0;

	for (i = 0; i < n; i++)
	{
		items[i].abbrev = abbrev_key(entries[i]->key, entries[i]->keylen);
		items[i].e = entries[i];
		items[i].seq = i;
	}
	sort_items(items, n);
	for (i = 0; i < n; i++)
	{
		if (dedup && i + 1 < n && items[i].abbrev == items[i + 1].abbrev &&
			keycmp(items[i].e->key, items[i].e->keylen,
				   items[i + 1].e->key, items[i + 1].e->keylen) == 0)
			continue;			/* superseded by a later write of the key */
		entries[j++] = items[i].e;
	}
	pfree(items);
	return j;
}

/*
 * Log mode.  Blind writes of a transaction that has no subtransaction (the
 * bulk-load and autocommit cases) are simply appended: with a million
 * entries, finding a key's entry in a hash table costs a cache miss per
 * write.  Repeated keys are resolved when the log is sorted (last write
 * wins).  The first read of a pending write, count, clear or
 * subtransaction start turns the log into the hash table used otherwise;
 * since no subtransaction was ever active in log mode, no undo is needed.
 */
static void
batch_leave_logmode(void)
{
	int			i;

	if (batch == NULL || !batch->logmode)
		return;
	if (!batch->sorted)
	{
		batch->nentries = sort_entries(batch->entries, batch->nentries, true);
		batch->sorted = true;
	}
	batch->logmode = false;
	batch->hash = cmap_bh_create(batch->cxt, Max(16, batch->nentries * 2), NULL);
	for (i = 0; i < batch->nentries; i++)
	{
		CmapEntry  *e = batch->entries[i];
		bool		found;
		BatchSlot  *slot = cmap_bh_insert_hash(batch->hash, e, e->hash, &found);

		Assert(!found);
		slot->entry = e;
	}
	batch->last = batch->nentries > 0 ? batch->entries[batch->nentries - 1] : NULL;
}

/* A subtransaction starts: log mode is over (see batch_leave_logmode). */
void
cmap_batch_subxact_start(void)
{
	batch_leave_logmode();
}

CmapEntry **
cmap_batch_sorted(int *n)
{
	if (batch == NULL)
	{
		*n = 0;
		return NULL;
	}
	batch_compact();
	if (!batch->sorted)
	{
		batch->nentries = sort_entries(batch->entries, batch->nentries,
									   batch->logmode);
		batch->sorted = true;
		batch->last = batch->nentries > 0 ? batch->entries[batch->nentries - 1] : NULL;
	}
	*n = batch->nentries;
	return batch->entries;
}

/* ------------------------------------------------------------------------
 * Reads through the batch
 * ------------------------------------------------------------------------
 */

/*
 * Parse a stored value as a 64-bit integer for cmap_increment; raises 22P02
 * naming the key when it is not one.
 */
int64
cmap_parse_int8(const char *data, Size len, const char *key, int keylen)
{
	char		buf[32];
	char	   *end;
	long long	v;
	Size		i = 0;

	/* allow surrounding spaces, as int8in does */
	while (i < len && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n'))
		i++;
	while (len > i && (data[len - 1] == ' ' || data[len - 1] == '\t' || data[len - 1] == '\n'))
		len--;
	if (len - i == 0 || len - i >= sizeof(buf))
		goto bad;
	memcpy(buf, data + i, len - i);
	buf[len - i] = '\0';
	errno = 0;
	v = strtoll(buf, &end, 10);
	if (*end != '\0' || end == buf)
		goto bad;
	if (errno == ERANGE)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("value of key \"%.*s\" is out of range for type bigint",
						keylen, key)));
	return (int64) v;

bad:
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("value of key \"%.*s\" is not an integer", keylen, key),
			 errdetail("cmap_increment() needs the stored value to be a bigint; it is \"%.*s\".",
					   (int) Min(len, 64), data)));
	pg_unreachable();
}

static void
report_incr_overflow(const char *key, int keylen)
{
	ereport(ERROR,
			(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
			 errmsg("bigint out of range incrementing key \"%.*s\"", keylen, key)));
}

/* base + delta, with the overflow error cmap_increment reports. */
int64
cmap_apply_delta(int64 base, CmapDelta delta, const char *key, int keylen)
{
#ifdef HAVE_INT128
	int128		r = (int128) base + delta;

	if (r > PG_INT64_MAX || r < PG_INT64_MIN)
		report_incr_overflow(key, keylen);
	return (int64) r;
#else
	return cmap_add_int8(base, delta, key, keylen);
#endif
}

/* Sum of pending deltas. */
CmapDelta
cmap_add_delta(CmapDelta a, int64 b, const char *key, int keylen)
{
#ifdef HAVE_INT128
	return a + b;				/* cannot overflow: at most 2^63 per call */
#else
	return cmap_add_int8(a, b, key, keylen);
#endif
}

/* Add with the overflow error cmap_increment reports. */
int64
cmap_add_int8(int64 a, int64 b, const char *key, int keylen)
{
	int64		r;

	if (pg_add_s64_overflow(a, b, &r))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("bigint out of range incrementing key \"%.*s\"", keylen, key)));
	return r;
}

/*
 * Read a key as the transaction sees it: its own pending write if any,
 * otherwise the snapshot (unless the transaction cleared the map).
 */
void
cmap_read(const CmapView *view, const char *key, int keylen, CmapValue *val)
{
	CmapEntry  *e = cmap_batch_lookup(key, keylen);
	CmapItem	item;

	if (e != NULL && e->st.op == CMAP_OP_CHECK)
		e = NULL;				/* validation only: not a write */
	val->own = false;
	val->version = 0;
	val->base_dep = false;
	val->base_found = false;
	val->base_version = 0;
	if (e != NULL && e->st.op != CMAP_OP_INCR)
	{
		val->own = true;
		val->found = (e->st.op == CMAP_OP_PUT);
		val->data = e->st.value;
		val->len = e->st.vallen;
		return;
	}
	if (cmap_batch_cleared())
	{
		/* the transaction's own clear decides: nothing from the snapshot */
		val->found = false;
		val->data = NULL;
		val->len = 0;
	}
	else
	{
		val->base_dep = true;
		if (cmap_tree_lookup(&view->tree, key, keylen, &item))
		{
			val->found = true;
			val->data = item.value;
			val->len = item.vallen;
			val->version = item.version;
			val->base_found = true;
			val->base_version = item.version;
		}
		else
		{
			val->found = false;
			val->data = NULL;
			val->len = 0;
		}
	}
	if (e != NULL)
	{
		/* pending increment: base value (or 0) plus the delta */
		int64		base = val->found ? cmap_parse_int8(val->data, val->len, key, keylen) : 0;
		char	   *buf = palloc(32);

		snprintf(buf, 32, INT64_FORMAT, cmap_apply_delta(base, e->st.delta, key, keylen));
		val->found = true;
		val->own = true;
		val->data = buf;
		val->len = strlen(buf);
	}
}

/* Number of keys the transaction sees. */
int64
cmap_read_count(const CmapView *view)
{
	int			i;
	int64		base;

	base = cmap_batch_cleared() ? 0 : (int64) view->tree.count;
	if (batch == NULL || batch->nentries == 0)
		return base;
	batch_leave_logmode();

	if (!batch->count_valid || batch->count_version != view->version)
	{
		batch->count_delta = 0;
		for (i = 0; i < batch->nentries; i++)
			batch->entries[i]->counted = false;
		batch->nuncounted = 0;
		for (i = 0; i < batch->nentries; i++)
		{
			CmapEntry  *e = batch->entries[i];

			/*
			 * Every entry, even one without a write yet (NONE, CHECK): a
			 * later write to it adjusts the count from this base.
			 */
			e->base_exists = !batch->cleared &&
				cmap_tree_lookup(&view->tree, e->key, e->keylen, NULL);
			e->counted = true;
			batch->count_delta += count_contrib(e->st.op, e->base_exists);
		}
		batch->count_valid = true;
		batch->count_version = view->version;
	}
	else
	{
		for (i = 0; i < batch->nuncounted; i++)
		{
			CmapEntry  *e = batch->uncounted[i];

			if (e->counted)
				continue;
			e->base_exists = !batch->cleared &&
				cmap_tree_lookup(&view->tree, e->key, e->keylen, NULL);
			e->counted = true;
			batch->count_delta += count_contrib(e->st.op, e->base_exists);
		}
		batch->nuncounted = 0;
	}
	return base + batch->count_delta;
}

/* ------------------------------------------------------------------------
 * Iteration support
 * ------------------------------------------------------------------------
 */

/*
 * Copy the live pending entries whose key starts with prefix, in key order,
 * for an iterator to merge with the snapshot.  The copy isolates the scan
 * from writes made while it runs.
 */
CmapEntry **
cmap_batch_snapshot(const char *prefix, int prefixlen, int *n)
{
	CmapEntry **all;
	CmapEntry **out;
	int			nall,
				i,
				j = 0;

	*n = 0;
	if (batch == NULL || batch->nentries == 0)
		return NULL;
	all = cmap_batch_sorted(&nall);
	out = palloc_extended(sizeof(CmapEntry *) * Max(nall, 1), MCXT_ALLOC_HUGE);
	for (i = 0; i < nall; i++)
	{
		CmapEntry  *e = all[i];
		CmapEntry  *c;

		if (prefix != NULL &&
			(e->keylen < prefixlen || memcmp(e->key, prefix, prefixlen) != 0))
			continue;
		c = palloc(sizeof(CmapEntry) + e->keylen);
		memcpy(c, e, sizeof(CmapEntry));
		memcpy((char *) c + sizeof(CmapEntry), e->key, e->keylen);
		c->key = (char *) c + sizeof(CmapEntry);
		if (e->st.op == CMAP_OP_PUT)
		{
			c->st.value = palloc(Max(e->st.vallen, 1));
			memcpy(c->st.value, e->st.value, e->st.vallen);
		}
		out[j++] = c;
	}
	*n = j;
	return out;
}
