/*-------------------------------------------------------------------------
 *
 * cmap_funcs.c
 *	  The SQL-callable functions of cmapext: argument checking, the choice
 *	  between a transactional write (recorded in the batch) and an
 *	  immediate one, and copying results out of shared memory.
 *
 * Reads take the statement's (or transaction's) pinned view from
 * cmap_snapshot.c and lay the transaction's own writes over it
 * (cmap_batch.c).  Transactional writes only touch the backend-local
 * batch; cmap_commit.c publishes it.  No function here takes a lock.
 *
 * Copyright (c) 2026, cmapext developers
 * Released under the PostgreSQL License (see LICENSE).
 *
 * IDENTIFICATION
 *	  src/cmap_funcs.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "cmapext.h"
#include "cmap_batch.h"
#include "cmap_commit.h"
#include "cmap_iter.h"
#include "cmap_snapshot.h"
#include "cmap_tree.h"

PG_FUNCTION_INFO_V1(cmap_store);
PG_FUNCTION_INFO_V1(cmap_load);
PG_FUNCTION_INFO_V1(cmap_delete);
PG_FUNCTION_INFO_V1(cmap_swap);
PG_FUNCTION_INFO_V1(cmap_load_or_store);
PG_FUNCTION_INFO_V1(cmap_compare_and_swap);
PG_FUNCTION_INFO_V1(cmap_compare_and_delete);
PG_FUNCTION_INFO_V1(cmap_increment);
PG_FUNCTION_INFO_V1(cmap_clear);
PG_FUNCTION_INFO_V1(cmap_count);
PG_FUNCTION_INFO_V1(cmap_version);
PG_FUNCTION_INFO_V1(cmap_iterate);
PG_FUNCTION_INFO_V1(cmap_stats);

/* ------------------------------------------------------------------------
 * Argument helpers
 * ------------------------------------------------------------------------
 */

/* Fetch a key argument: not null, not too long. */
static void
arg_key(FunctionCallInfo fcinfo, int argno, const char **key, int *keylen)
{
	text	   *t;
	Size		len;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("cmapext key cannot be null")));
	t = PG_GETARG_TEXT_PP(argno);
	len = VARSIZE_ANY_EXHDR(t);
	if (len > CMAP_MAX_KEY_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("cmapext key is too long"),
				 errdetail("Keys are limited to %d bytes; this key has %zu bytes.",
						   CMAP_MAX_KEY_LEN, len)));
	*key = VARDATA_ANY(t);
	*keylen = (int) len;
}

/* Fetch a value argument: not null. */
static void
arg_value(FunctionCallInfo fcinfo, int argno, const char *what,
		  const char **value, Size *vallen)
{
	text	   *t;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("cmapext %s cannot be null", what)));
	t = PG_GETARG_TEXT_PP(argno);
	*value = VARDATA_ANY(t);
	*vallen = VARSIZE_ANY_EXHDR(t);
}

/* Checks common to every writing function. */
static void
write_prelude(const char *fname)
{
	cmap_check_loaded();
	PreventCommandIfReadOnly(fname);
	PreventCommandIfParallelMode(fname);
}

static inline bool
bytes_equal(const char *a, Size alen, const char *b, Size blen)
{
	return alen == blen && memcmp(a, b, alen) == 0;
}

static inline text *
value_text(const CmapValue *v)
{
	return cstring_to_text_with_len(v->data, v->len);
}

/*
 * The version a conditional operation or an increment decides on.  Inside
 * a transaction block: the transaction's view (validated at commit).  In
 * autocommit: the latest committed version, after taking the map's
 * conditional-commit lock, so that concurrent conditional operations on a
 * key behave like their sync.Map namesakes (one LoadOrStore wins, the
 * others load its value; each increment sees the previous one) instead of
 * failing with 40001.  The lock is held to the end of the transaction.
 */
static const CmapView *
decision_view(void)
{
	if (!IsTransactionBlock())
	{
		cmap_attach();
		cmap_cond_lock(cmap_my_map);
		return cmap_view_latest();
	}
	return cmap_view_get();
}

/*
 * A conditional operation decided on the snapshot (not on the transaction's
 * own writes): remember what it saw, for validation at commit.
 */
static CmapEntry *
note_dependency(const CmapView *view, const char *key, int keylen,
				const CmapValue *v)
{
	CmapEntry  *e = cmap_batch_entry(key, keylen);

	/* also for a pending increment: its value is the snapshot's plus ours */
	if (v->base_dep)
		cmap_batch_set_dep(e, v->base_found ? CMAP_DEP_VERSION : CMAP_DEP_ABSENT,
						   v->base_version, view->version);
	return e;
}

/* ------------------------------------------------------------------------
 * Writers
 * ------------------------------------------------------------------------
 */

Datum
cmap_store(PG_FUNCTION_ARGS)
{
	const char *key;
	const char *value;
	int			keylen;
	Size		vallen;

	write_prelude("cmap_store()");
	arg_key(fcinfo, 0, &key, &keylen);
	arg_value(fcinfo, 1, "value", &value, &vallen);

	if (!cmap_transactional)
	{
		CmapImmResult res;

		cmap_immediate(CMAP_IMM_STORE, key, keylen, value, vallen, NULL, 0, 0, &res);
		PG_RETURN_VOID();
	}
	cmap_batch_set_put(cmap_batch_entry(key, keylen), value, vallen);
	PG_RETURN_VOID();
}

Datum
cmap_delete(PG_FUNCTION_ARGS)
{
	const char *key;
	int			keylen;
	CmapValue	v;
	const CmapView *view;

	write_prelude("cmap_delete()");
	arg_key(fcinfo, 0, &key, &keylen);

	if (!cmap_transactional)
	{
		CmapImmResult res;

		cmap_immediate(CMAP_IMM_DELETE, key, keylen, NULL, 0, NULL, 0, 0, &res);
		PG_RETURN_BOOL(res.found);
	}
	view = cmap_view_get();
	cmap_read(view, key, keylen, &v);
	/* blind: deletes the key at commit even if it appeared meanwhile */
	cmap_batch_set_delete(cmap_batch_entry(key, keylen));
	PG_RETURN_BOOL(v.found);
}

Datum
cmap_swap(PG_FUNCTION_ARGS)
{
	const char *key;
	const char *value;
	int			keylen;
	Size		vallen;
	CmapValue	v;
	const CmapView *view;
	text	   *old = NULL;

	write_prelude("cmap_swap()");
	arg_key(fcinfo, 0, &key, &keylen);
	arg_value(fcinfo, 1, "value", &value, &vallen);

	if (!cmap_transactional)
	{
		CmapImmResult res;

		cmap_immediate(CMAP_IMM_SWAP, key, keylen, value, vallen, NULL, 0, 0, &res);
		if (!res.found)
			PG_RETURN_NULL();
		PG_RETURN_TEXT_P(cstring_to_text_with_len(res.old, res.oldlen));
	}
	view = cmap_view_get();
	cmap_read(view, key, keylen, &v);
	if (v.found)
		old = value_text(&v);	/* copy before the batch changes */
	cmap_batch_set_put(cmap_batch_entry(key, keylen), value, vallen);
	if (old == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(old);
}

Datum
cmap_load_or_store(PG_FUNCTION_ARGS)
{
	const char *key;
	const char *value;
	int			keylen;
	Size		vallen;
	CmapValue	v;
	const CmapView *view;
	CmapEntry  *e;

	write_prelude("cmap_load_or_store()");
	arg_key(fcinfo, 0, &key, &keylen);
	arg_value(fcinfo, 1, "value", &value, &vallen);

	if (!cmap_transactional)
	{
		CmapImmResult res;

		cmap_immediate(CMAP_IMM_LOAD_OR_STORE, key, keylen, value, vallen,
					   NULL, 0, 0, &res);
		if (res.found)
			PG_RETURN_TEXT_P(cstring_to_text_with_len(res.old, res.oldlen));
		PG_RETURN_TEXT_P(cstring_to_text_with_len(value, vallen));
	}
	view = decision_view();
	cmap_read(view, key, keylen, &v);
	if (v.found)
	{
		text	   *result = value_text(&v);

		(void) note_dependency(view, key, keylen, &v);
		PG_RETURN_TEXT_P(result);
	}
	e = note_dependency(view, key, keylen, &v);
	cmap_batch_set_put(e, value, vallen);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(value, vallen));
}

Datum
cmap_compare_and_swap(PG_FUNCTION_ARGS)
{
	const char *key;
	const char *old;
	const char *new;
	int			keylen;
	Size		oldlen,
				newlen;
	CmapValue	v;
	const CmapView *view;
	CmapEntry  *e;
	bool		match;

	write_prelude("cmap_compare_and_swap()");
	arg_key(fcinfo, 0, &key, &keylen);
	arg_value(fcinfo, 1, "old value", &old, &oldlen);
	arg_value(fcinfo, 2, "new value", &new, &newlen);

	if (!cmap_transactional)
	{
		CmapImmResult res;

		cmap_immediate(CMAP_IMM_CAS, key, keylen, new, newlen, old, oldlen, 0, &res);
		PG_RETURN_BOOL(res.applied || (res.found && bytes_equal(res.old, res.oldlen, old, oldlen)));
	}
	view = decision_view();
	cmap_read(view, key, keylen, &v);
	match = v.found && bytes_equal(v.data, v.len, old, oldlen);
	e = note_dependency(view, key, keylen, &v);
	if (match)
		cmap_batch_set_put(e, new, newlen);
	PG_RETURN_BOOL(match);
}

Datum
cmap_compare_and_delete(PG_FUNCTION_ARGS)
{
	const char *key;
	const char *old;
	int			keylen;
	Size		oldlen;
	CmapValue	v;
	const CmapView *view;
	CmapEntry  *e;
	bool		match;

	write_prelude("cmap_compare_and_delete()");
	arg_key(fcinfo, 0, &key, &keylen);
	arg_value(fcinfo, 1, "old value", &old, &oldlen);

	if (!cmap_transactional)
	{
		CmapImmResult res;

		cmap_immediate(CMAP_IMM_CAD, key, keylen, NULL, 0, old, oldlen, 0, &res);
		PG_RETURN_BOOL(res.applied);
	}
	view = decision_view();
	cmap_read(view, key, keylen, &v);
	match = v.found && bytes_equal(v.data, v.len, old, oldlen);
	e = note_dependency(view, key, keylen, &v);
	if (match)
		cmap_batch_set_delete(e);
	PG_RETURN_BOOL(match);
}

Datum
cmap_increment(PG_FUNCTION_ARGS)
{
	const char *key;
	int			keylen;
	int64		delta;
	CmapValue	v;
	const CmapView *view;
	CmapEntry  *e;
	int64		result;

	write_prelude("cmap_increment()");
	arg_key(fcinfo, 0, &key, &keylen);
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("cmapext increment cannot be null")));
	delta = PG_GETARG_INT64(1);

	if (!cmap_transactional)
	{
		CmapImmResult res;

		cmap_immediate(CMAP_IMM_INCREMENT, key, keylen, NULL, 0, NULL, 0, delta, &res);
		PG_RETURN_INT64(res.number);
	}

	view = decision_view();
	cmap_read(view, key, keylen, &v);
	/* the value the transaction sees must be an integer (22P02 otherwise) */
	result = v.found ? cmap_parse_int8(v.data, v.len, key, keylen) : 0;
	result = cmap_add_int8(result, delta, key, keylen);

	e = cmap_batch_entry(key, keylen);
	if (e->st.op == CMAP_OP_PUT || e->st.op == CMAP_OP_DEL || cmap_batch_cleared())
	{
		/* the transaction wrote the key itself: the base is its own value */
		char		buf[32];

		snprintf(buf, sizeof(buf), INT64_FORMAT, result);
		cmap_batch_set_put(e, buf, strlen(buf));
	}
	else
	{
		/* lossless: add to whatever the value is at commit */
		CmapDelta	total = (e->st.op == CMAP_OP_INCR) ?
			cmap_add_delta(e->st.delta, delta, key, keylen) : delta;

		cmap_batch_set_incr(e, total);
	}
	PG_RETURN_INT64(result);
}

Datum
cmap_clear(PG_FUNCTION_ARGS)
{
	const CmapView *view;
	int64		n;

	write_prelude("cmap_clear()");
	if (!cmap_transactional)
	{
		CmapImmResult res;

		cmap_immediate(CMAP_IMM_CLEAR, NULL, 0, NULL, 0, NULL, 0, 0, &res);
		PG_RETURN_INT64(res.number);
	}
	view = cmap_view_get();
	n = cmap_read_count(view);
	cmap_batch_clear();
	PG_RETURN_INT64(n);
}

/* ------------------------------------------------------------------------
 * Readers
 * ------------------------------------------------------------------------
 */

Datum
cmap_load(PG_FUNCTION_ARGS)
{
	const char *key;
	int			keylen;
	CmapValue	v;

	cmap_check_loaded();
	arg_key(fcinfo, 0, &key, &keylen);
	cmap_read(cmap_view_get(), key, keylen, &v);
	if (!v.found)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(value_text(&v));
}

Datum
cmap_count(PG_FUNCTION_ARGS)
{
	cmap_check_loaded();
	PG_RETURN_INT64(cmap_read_count(cmap_view_get()));
}

Datum
cmap_version(PG_FUNCTION_ARGS)
{
	cmap_check_loaded();
	PG_RETURN_INT64((int64) cmap_view_get()->version);
}

/* ------------------------------------------------------------------------
 * cmap_iterate(prefix text DEFAULT NULL)
 *
 * Value-per-call, so that in a target list (SELECT cmap_iterate()) it
 * streams row by row; in FROM clauses the planner normally uses the
 * streaming custom scan of cmap_scan.c instead.
 * ------------------------------------------------------------------------
 */

static void
iter_shutdown(Datum arg)
{
	cmap_iter_end((CmapIter *) DatumGetPointer(arg));
}

Datum
cmap_iterate(PG_FUNCTION_ARGS)
{
	FuncCallContext *funcctx;
	CmapIter   *it;
	Datum		values[3];
	bool		nulls[3];

	if (SRF_IS_FIRSTCALL())
	{
		MemoryContext oldcxt;
		ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
		TupleDesc	tupdesc;

		cmap_check_loaded();
		funcctx = SRF_FIRSTCALL_INIT();
		oldcxt = MemoryContextSwitchTo(funcctx->multi_call_memory_ctx);

		if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "return type must be a row type");
		funcctx->tuple_desc = BlessTupleDesc(tupdesc);

		it = palloc(sizeof(CmapIter));
		if (PG_ARGISNULL(0))
			cmap_iter_begin(it, NULL, 0);
		else
		{
			text	   *p = PG_GETARG_TEXT_PP(0);

			cmap_iter_begin(it, VARDATA_ANY(p), VARSIZE_ANY_EXHDR(p));
		}
		/* release the pin when the scan stops early (LIMIT, cursor close) */
		if (rsinfo != NULL && IsA(rsinfo, ReturnSetInfo) && rsinfo->econtext != NULL)
			RegisterExprContextCallback(rsinfo->econtext, iter_shutdown,
										PointerGetDatum(it));
		funcctx->user_fctx = it;
		MemoryContextSwitchTo(oldcxt);
	}

	funcctx = SRF_PERCALL_SETUP();
	it = (CmapIter *) funcctx->user_fctx;

	CHECK_FOR_INTERRUPTS();
	if (cmap_iter_next(it, CurrentMemoryContext, CMAP_COL_ALL, values, nulls))
		SRF_RETURN_NEXT(funcctx,
						HeapTupleGetDatum(heap_form_tuple(funcctx->tuple_desc,
														  values, nulls)));
	cmap_iter_end(it);

	/*
	 * SRF_RETURN_DONE frees the memory the iterator lives in: the end-of-scan
	 * callback must not run on it later (found by valgrind).
	 */
	{
		ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

		if (rsinfo != NULL && IsA(rsinfo, ReturnSetInfo) && rsinfo->econtext != NULL)
			UnregisterExprContextCallback(rsinfo->econtext, iter_shutdown,
										  PointerGetDatum(it));
	}
	SRF_RETURN_DONE(funcctx);
}

/* ------------------------------------------------------------------------
 * cmap_stats()
 * ------------------------------------------------------------------------
 */

Datum
cmap_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[14];
	bool		nulls[14];
	CmapMap    *map;
	uint64		word;
	CmapHeader *hdr;
	int			npinned = 0;
	uint64		oldest = PG_UINT64_MAX;
	int			p,
				i;
	uint64		retained;
	uint64		pool_free;
	int			nmaps = 0;

	cmap_check_loaded();
	cmap_attach();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	map = cmap_my_map;

	/* header of the latest version: pin it while reading */
	LWLockAcquire(map->writer_lock, LW_SHARED);
	word = cmap_current_word(map);
	hdr = &cmap_shared->headers[CMAP_WORD_SLOT(word)];
	retained = map->retired_bytes;
	MemSet(nulls, 0, sizeof(nulls));
	values[0] = Int64GetDatum((int64) hdr->version);
	values[1] = Int64GetDatum((int64) hdr->count);
	values[10] = Int64GetDatum((int64) (hdr->nodes * CMAP_NODE_SIZE + hdr->blob_bytes));
	values[11] = Int32GetDatum((int32) hdr->height);
	LWLockRelease(map->writer_lock);

	/* pins of this map's versions, by any process */
	for (p = 0; p < cmap_shared->nprocs; p++)
	{
		for (i = 0; i < cmap_shared->pins_per_proc; i++)
		{
			uint64		w = pg_atomic_read_u64(&cmap_shared->slots[p].pins[i]);
			CmapHeader *h;

			if (w == 0)
				continue;
			h = &cmap_shared->headers[CMAP_WORD_SLOT(w)];
			if (h->map_index != map->index || h->version != CMAP_WORD_VERSION(w))
				continue;
			npinned++;
			oldest = Min(oldest, CMAP_WORD_VERSION(w));
		}
	}
	for (i = 0; i < cmap_shared->max_maps; i++)
		if (cmap_map_by_index(i)->state != CMAP_MAP_FREE)
			nmaps++;

	SpinLockAcquire(&cmap_shared->pool_lock);
	pool_free = cmap_shared->pool_nfree;
	SpinLockRelease(&cmap_shared->pool_lock);

	values[2] = Int64GetDatum((int64) (pg_atomic_read_u64(&cmap_shared->nodes_allocated) * CMAP_NODE_SIZE +
									   pg_atomic_read_u64(&cmap_shared->blob_bytes)));
	values[3] = Int64GetDatum((int64) cmap_shared->dsa_size);
	values[4] = Int32GetDatum(npinned);
	if (npinned > 0)
		values[5] = Int64GetDatum((int64) oldest);
	else
		nulls[5] = true;
	values[6] = Int64GetDatum((int64) pg_atomic_read_u64(&map->commits));
	values[7] = Int64GetDatum((int64) retained);
	values[8] = Int64GetDatum((int64) pg_atomic_read_u64(&map->reclaimed_bytes));
	values[9] = Int64GetDatum((int64) pg_atomic_read_u64(&cmap_shared->reclaim_runs));
	values[12] = Int64GetDatum((int64) pool_free * CMAP_NODE_SIZE);
	values[13] = Int32GetDatum(nmaps);

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc),
													  values, nulls)));
}
