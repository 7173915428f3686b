/*-------------------------------------------------------------------------
 *
 * cmap_mirror.c
 *	  cmap_mirror(): a trigger that keeps a table mirrored in the map.
 *
 *	  CREATE TRIGGER t AFTER INSERT OR UPDATE OR DELETE ON tab
 *		FOR EACH ROW EXECUTE FUNCTION cmap_mirror('key_column' [, 'key_prefix']);
 *
 * INSERT stores prefix || key -> row_to_json(NEW)::text; DELETE removes the
 * key; an UPDATE stores the new row and, when the key changed, removes the
 * old key.  The key is the column's text form (see mirror_key_text), so any
 * type works.  An
 * optional AFTER TRUNCATE ... FOR EACH STATEMENT trigger with the same
 * arguments removes every key that starts with the prefix.
 *
 * The writes go to the transaction's batch like cmap_store() and are
 * published with the transaction's commit, whatever cmapext.transactional
 * says: a mirror must never show rows that were rolled back.  The trigger
 * takes no lock and touches no shared memory.
 *
 * Copyright (c) 2026, cmapext developers
 * Released under the PostgreSQL License (see LICENSE).
 *
 * IDENTIFICATION
 *	  src/cmap_mirror.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/shortest_dec.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "cmap_batch.h"
#include "cmap_shmem.h"
#include "cmap_snapshot.h"
#include "cmap_tree.h"

PG_FUNCTION_INFO_V1(cmap_mirror);

/*
 * The text of a key column value, independent of session settings: the
 * same row must map to the same key whoever changes it.  Date and time
 * types use ISO 8601 (UTC for types with a time zone) whatever DateStyle
 * and TimeZone say; floating-point numbers use the shortest exact form
 * whatever extra_float_digits says; other types use their output function.
 */
static char *
mirror_key_text(Datum value, Oid typid)
{
	char		buf[MAXDATELEN + 1];
	int			utc = 0;

	typid = getBaseType(typid);
	switch (typid)
	{
		case DATEOID:
		case TIMEOID:
		case TIMESTAMPOID:
			return pstrdup(JsonEncodeDateTime(buf, value, typid, NULL));
		case TIMETZOID:
		case TIMESTAMPTZOID:
			return pstrdup(JsonEncodeDateTime(buf, value, typid, &utc));
		case FLOAT4OID:
		case FLOAT8OID:
			{
				double		d = (typid == FLOAT4OID) ?
					(double) DatumGetFloat4(value) : DatumGetFloat8(value);
				char		num[DOUBLE_SHORTEST_DECIMAL_LEN];

				if (isnan(d))
					return pstrdup("NaN");
				if (isinf(d))
					return pstrdup(d > 0 ? "Infinity" : "-Infinity");
				if (typid == FLOAT4OID)
					(void) float_to_shortest_decimal_buf(DatumGetFloat4(value), num);
				else
					(void) double_to_shortest_decimal_buf(d, num);
				return pstrdup(num);
			}
		default:
			{
				Oid			typoutput;
				bool		typisvarlena;

				getTypeOutputInfo(typid, &typoutput, &typisvarlena);
				return OidOutputFunctionCall(typoutput, value);
			}
	}
}

/* Build prefix || text of the key column; errors for NULL or long keys. */
static char *
mirror_key(TriggerData *td, HeapTuple tuple, int attnum, const char *colname,
		   const char *prefix, int *keylen)
{
	TupleDesc	tupdesc = td->tg_relation->rd_att;
	bool		isnull;
	Datum		value = SPI_getbinval(tuple, tupdesc, attnum, &isnull);
	char	   *val = isnull ? NULL :
		mirror_key_text(value, TupleDescAttr(tupdesc, attnum - 1)->atttypid);
	StringInfoData buf;

	if (val == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("key column \"%s\" of table \"%s\" is null",
						colname, RelationGetRelationName(td->tg_relation)),
				 errdetail("cmap_mirror() needs a non-null key to mirror a row.")));
	initStringInfo(&buf);
	appendStringInfoString(&buf, prefix);
	appendStringInfoString(&buf, val);
	if (buf.len > CMAP_MAX_KEY_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("cmapext key is too long"),
				 errdetail("Keys are limited to %d bytes; the key of this row of table \"%s\" has %d bytes.",
						   CMAP_MAX_KEY_LEN, RelationGetRelationName(td->tg_relation),
						   buf.len)));
	*keylen = buf.len;
	return buf.data;
}

/* row_to_json(tuple)::text */
static text *
mirror_value(TriggerData *td, HeapTuple tuple)
{
	Datum		row = heap_copy_tuple_as_datum(tuple, td->tg_relation->rd_att);

	return DatumGetTextPP(DirectFunctionCall1(row_to_json, row));
}

static void
mirror_store(const char *key, int keylen, text *value)
{
	CmapEntry  *e = cmap_batch_entry(key, keylen);

	cmap_batch_set_put(e, VARDATA_ANY(value), VARSIZE_ANY_EXHDR(value));
	/* remember which statement stored it: see the UPDATE case */
	e->st.mirror_cid = GetCurrentCommandId(false);
}

static void
mirror_delete(const char *key, int keylen)
{
	cmap_batch_set_delete(cmap_batch_entry(key, keylen));
}

/*
 * TRUNCATE: delete every key with the prefix, as the transaction sees them
 * (snapshot keys and its own pending writes).
 */
static void
mirror_truncate(const char *prefix)
{
	const CmapView *view = cmap_view_get();
	CmapEntry **pending;
	int			npending,
				i;
	int			plen = strlen(prefix);

	pending = cmap_batch_snapshot(prefix, plen, &npending);
	for (i = 0; i < npending; i++)
		mirror_delete(pending[i]->key, pending[i]->keylen);
	if (!cmap_batch_cleared())
	{
		CmapCursor	cur;
		CmapItem	item;

		cmap_cursor_seek(&cur, &view->tree, prefix, plen);
		while (cmap_cursor_get(&cur, &item) &&
			   item.keylen >= plen && memcmp(item.key, prefix, plen) == 0)
		{
			char	   *k = pnstrdup(item.key, item.keylen);

			mirror_delete(k, item.keylen);
			cmap_cursor_next(&cur);
			CHECK_FOR_INTERRUPTS();
		}
	}
}

Datum
cmap_mirror(PG_FUNCTION_ARGS)
{
	TriggerData *td;
	Trigger    *trig;
	const char *colname;
	const char *prefix;
	int			attnum;
	char	   *key;
	int			keylen;

	cmap_check_loaded();
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" was not called by trigger manager",
						"cmap_mirror")));
	td = (TriggerData *) fcinfo->context;
	trig = td->tg_trigger;

	if (trig->tgnargs < 1 || trig->tgnargs > 2)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("cmap_mirror() takes one or two arguments"),
				 errhint("Use cmap_mirror('key_column') or cmap_mirror('key_column', 'key_prefix').")));
	colname = trig->tgargs[0];
	prefix = trig->tgnargs > 1 ? trig->tgargs[1] : "";

	if (!TRIGGER_FIRED_AFTER(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("cmap_mirror() must be fired AFTER the change"),
				 errhint("Create the trigger with AFTER INSERT OR UPDATE OR DELETE ... FOR EACH ROW.")));

	if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
	{
		if (prefix[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
					 errmsg("cmap_mirror() needs a key prefix to mirror TRUNCATE"),
					 errdetail("Without a prefix, truncating the table would delete every key of the map.")));
		PreventCommandIfReadOnly("cmap_mirror()");
		mirror_truncate(prefix);
		return PointerGetDatum(NULL);
	}

	if (!TRIGGER_FIRED_FOR_ROW(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("cmap_mirror() must be fired FOR EACH ROW"),
				 errhint("Create the trigger with AFTER INSERT OR UPDATE OR DELETE ... FOR EACH ROW.")));

	attnum = SPI_fnumber(td->tg_relation->rd_att, colname);
	if (attnum == SPI_ERROR_NOATTRIBUTE || attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist",
						colname, RelationGetRelationName(td->tg_relation)),
				 errhint("The first argument of cmap_mirror() names the key column.")));

	PreventCommandIfReadOnly("cmap_mirror()");

	if (TRIGGER_FIRED_BY_INSERT(td->tg_event))
	{
		key = mirror_key(td, td->tg_trigtuple, attnum, colname, prefix, &keylen);
		mirror_store(key, keylen, mirror_value(td, td->tg_trigtuple));
	}
	else if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
	{
		key = mirror_key(td, td->tg_trigtuple, attnum, colname, prefix, &keylen);
		mirror_delete(key, keylen);
	}
	else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		int			oldlen;
		char	   *oldkey = mirror_key(td, td->tg_trigtuple, attnum, colname,
										prefix, &oldlen);

		key = mirror_key(td, td->tg_newtuple, attnum, colname, prefix, &keylen);

		/*
		 * The key moved: the old entry goes, unless another row of this same
		 * statement has just moved onto that key (UPDATE ... SET id = id + 1
		 * visits the rows in any order).
		 */
		if (oldlen != keylen || memcmp(oldkey, key, keylen) != 0)
		{
			CmapEntry  *old = cmap_batch_lookup(oldkey, oldlen);

			if (old == NULL || old->st.op != CMAP_OP_PUT ||
				old->st.mirror_cid != GetCurrentCommandId(false))
				mirror_delete(oldkey, oldlen);
		}
		mirror_store(key, keylen, mirror_value(td, td->tg_newtuple));
	}
	return PointerGetDatum(NULL);
}
