/*-------------------------------------------------------------------------
 *
 * cmap_iter.c
 *	  Iterating the map as a transaction sees it: one pinned version merged
 *	  with the transaction's own pending writes, in key order.
 *
 * The iterator takes its own reference on the statement's (or
 * transaction's) pinned view, so the version it walks stays alive exactly
 * as long as the iteration, from the first row to the last, whatever other
 * backends commit meanwhile.  The transaction's pending writes are copied at
 * the start (cmap_batch_snapshot), so writes made while iterating (for
 * example by the same statement) do not show up halfway through.
 *
 * Values are copied out of shared memory row by row; nothing here takes a
 * lock.  An iterator abandoned by an error is released by the transaction
 * or subtransaction abort callbacks (cmap_snapshot.c).
 *
 * Copyright (c) 2026, cmapext developers
 * Released under the PostgreSQL License (see LICENSE).
 *
 * IDENTIFICATION
 *	  src/cmap_iter.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/builtins.h"

#include "cmap_iter.h"
#include "cmap_snapshot.h"

void
cmap_iter_begin(CmapIter *it, const char *prefix, int prefixlen)
{
	const CmapView *view;

	MemSet(it, 0, sizeof(CmapIter));
	it->ref = -1;
	if (prefix != NULL)
	{
		it->prefixlen = prefixlen;
		it->prefix = palloc(prefixlen + 1);
		memcpy(it->prefix, prefix, prefixlen);
	}
	view = cmap_view_get();
	it->tree = view->tree;
	it->ref = cmap_view_ref(view);
	it->use_tree = !cmap_batch_cleared();
	it->pending = cmap_batch_snapshot(it->prefix, it->prefixlen, &it->npending);
	if (it->use_tree)
		cmap_cursor_seek(&it->cur, &it->tree, it->prefix, it->prefixlen);
}

void
cmap_iter_end(CmapIter *it)
{
	if (it->ref >= 0)
	{
		cmap_view_unref(it->ref);
		it->ref = -1;
	}
}

/* The tree's current item, if it still matches the prefix. */
static bool
iter_tree_item(CmapIter *it, CmapItem *item)
{
	if (!it->use_tree || !cmap_cursor_get(&it->cur, item))
		return false;
	if (it->prefix != NULL &&
		(item->keylen < it->prefixlen ||
		 memcmp(item->key, it->prefix, it->prefixlen) != 0))
	{
		it->use_tree = false;	/* keys are ordered: no more matches */
		return false;
	}
	return true;
}

static inline int
iter_keycmp(const char *a, int alen, const char *b, int blen)
{
	int			r = memcmp(a, b, Min(alen, blen));

	if (r != 0)
		return r;
	return (alen > blen) - (alen < blen);
}

bool
cmap_iter_next(CmapIter *it, MemoryContext rowcxt, int mask,
			   Datum *values, bool *nulls)
{
	for (;;)
	{
		CmapItem	item;
		bool		have_tree;
		CmapEntry  *p = NULL;
		int			c;
		MemoryContext oldcxt;

		have_tree = iter_tree_item(it, &item);
		if (it->pi < it->npending)
			p = it->pending[it->pi];
		if (!have_tree && p == NULL)
			return false;

		if (have_tree && p != NULL)
			c = iter_keycmp(item.key, item.keylen, p->key, p->keylen);
		else
			c = have_tree ? -1 : 1;

		nulls[0] = !(mask & CMAP_COL_KEY);
		nulls[1] = !(mask & CMAP_COL_VALUE);
		nulls[2] = !(mask & CMAP_COL_VERSION);
		if (c > 0 || (c == 0 && p->st.op != CMAP_OP_CHECK))
		{
			/* the transaction's own write wins */
			bool		tree_same = (c == 0);

			it->pi++;
			if (tree_same)
				cmap_cursor_next(&it->cur);
			if (p->st.op == CMAP_OP_DEL || p->st.op == CMAP_OP_CHECK)
				continue;
			oldcxt = MemoryContextSwitchTo(rowcxt);
			if (mask & CMAP_COL_KEY)
				values[0] = PointerGetDatum(cstring_to_text_with_len(p->key, p->keylen));
			if ((mask & CMAP_COL_VALUE) && p->st.op == CMAP_OP_INCR)
			{
				int64		base = tree_same ?
					cmap_parse_int8(item.value, item.vallen, p->key, p->keylen) : 0;

				values[1] = PointerGetDatum(cstring_to_text(psprintf(INT64_FORMAT,
																	 cmap_apply_delta(base, p->st.delta, p->key, p->keylen))));
			}
			else if (mask & CMAP_COL_VALUE)
				values[1] = PointerGetDatum(cstring_to_text_with_len(p->st.value, p->st.vallen));
			MemoryContextSwitchTo(oldcxt);
			nulls[2] = true;	/* not committed yet: no version */
			return true;
		}

		if (c == 0)
			it->pi++;			/* a CHECK entry: the snapshot's value stands */
		oldcxt = MemoryContextSwitchTo(rowcxt);
		if (mask & CMAP_COL_KEY)
			values[0] = PointerGetDatum(cstring_to_text_with_len(item.key, item.keylen));
		if (mask & CMAP_COL_VALUE)
			values[1] = PointerGetDatum(cstring_to_text_with_len(item.value, item.vallen));
		MemoryContextSwitchTo(oldcxt);
		values[2] = Int64GetDatum((int64) item.version);
		cmap_cursor_next(&it->cur);
		return true;
	}
}
