/*-------------------------------------------------------------------------
 *
 * cmap_scan.c
 *	  A streaming scan for cmap_iterate() in FROM clauses.
 *
 * PostgreSQL runs a set-returning function in FROM through a FunctionScan,
 * which first materialises every row into a tuplestore (spilling to disk
 * past work_mem) and only then hands rows up.  For a map of a million keys
 * that is most of the cost of "SELECT ... FROM cmap_iterate()".  This file
 * adds a planner path (set_rel_pathlist_hook) for a range-table function
 * that is exactly cmap_iterate(prefix), and a CustomScan that produces the
 * rows straight from the pinned version into virtual tuples, one at a time.
 *
 * Semantics are those of the function (cmap_iter.c does the work for
 * both): same version, same rows, same order.  The path is only offered for
 * a plain call (no WITH ORDINALITY, no ROWS FROM with several functions, no
 * lateral reference in the prefix, no whole-row reference to the result);
 * otherwise the FunctionScan is used.  SET cmapext.custom_scan = off turns
 * it off altogether.  The scan is not parallel-aware, matching the
 * function's PARALLEL RESTRICTED marking.
 *
 * Copyright (c) 2026, cmapext developers
 * Released under the PostgreSQL License (see LICENSE).
 *
 * IDENTIFICATION
 *	  src/cmap_scan.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/sysattr.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "executor/executor.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/extensible.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "optimizer/paths.h"
#include "optimizer/restrictinfo.h"
#include "parser/parsetree.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "cmapext.h"
#include "cmap_iter.h"
#include "cmap_scan.h"

#define CMAP_SCAN_NAME	"cmap_iterate"

typedef struct CmapScanState
{
	CustomScanState css;
	ExprState  *prefix;			/* the prefix argument, evaluated at start */
	CmapIter	it;
	bool		started;
	int			mask;			/* CMAP_COL_* the plan uses */
} CmapScanState;

bool		cmap_custom_scan = true;

static set_rel_pathlist_hook_type prev_set_rel_pathlist_hook = NULL;

static void cmap_set_rel_pathlist(PlannerInfo *root, RelOptInfo *rel,
								  Index rti, RangeTblEntry *rte);
static Plan *cmap_plan_path(PlannerInfo *root, RelOptInfo *rel,
							CustomPath *best_path, List *tlist,
							List *clauses, List *custom_plans);
static Node *cmap_create_scan_state(CustomScan *cscan);
static void cmap_begin_scan(CustomScanState *node, EState *estate, int eflags);
static TupleTableSlot *cmap_exec_scan(CustomScanState *node);
static void cmap_end_scan(CustomScanState *node);
static void cmap_rescan(CustomScanState *node);

static const CustomPathMethods cmap_path_methods = {
	.CustomName = CMAP_SCAN_NAME,
	.PlanCustomPath = cmap_plan_path,
};

static const CustomScanMethods cmap_scan_methods = {
	.CustomName = CMAP_SCAN_NAME,
	.CreateCustomScanState = cmap_create_scan_state,
};

static const CustomExecMethods cmap_exec_methods = {
	.CustomName = CMAP_SCAN_NAME,
	.BeginCustomScan = cmap_begin_scan,
	.ExecCustomScan = cmap_exec_scan,
	.EndCustomScan = cmap_end_scan,
	.ReScanCustomScan = cmap_rescan,
};

void
cmap_scan_register(void)
{
	RegisterCustomScanMethods(&cmap_scan_methods);
	prev_set_rel_pathlist_hook = set_rel_pathlist_hook;
	set_rel_pathlist_hook = cmap_set_rel_pathlist;
}

/*
 * Is funcid our cmap_iterate()?  Recognised by what it runs (this library's
 * C symbol), not by name or schema, so a user function of the same name is
 * never affected.
 */
static bool
is_cmap_iterate(Oid funcid)
{
	HeapTuple	tup;
	Form_pg_proc proc;
	bool		result = false;

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcid));
	if (!HeapTupleIsValid(tup))
		return false;
	proc = (Form_pg_proc) GETSTRUCT(tup);
	if (proc->prolang == ClanguageId && proc->proretset)
	{
		bool		isnull;
		Datum		src = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_prosrc, &isnull);
		Datum		bin;

		if (!isnull && strcmp(TextDatumGetCString(src), "cmap_iterate") == 0)
		{
			bin = SysCacheGetAttr(PROCOID, tup, Anum_pg_proc_probin, &isnull);
			if (!isnull)
			{
				char	   *path = TextDatumGetCString(bin);
				size_t		len = strlen(path);

				result = len >= 7 && strcmp(path + len - 7, "cmapext") == 0;
			}
		}
	}
	ReleaseSysCache(tup);
	return result;
}

/* Does the rel's target list refer to the whole row (Var with attno 0)? */
static bool
uses_whole_row(RelOptInfo *rel)
{
	ListCell   *lc;

	foreach(lc, rel->reltarget->exprs)
	{
		Node	   *expr = (Node *) lfirst(lc);

		if (IsA(expr, Var) && ((Var *) expr)->varattno <= 0)
			return true;
	}
	return false;
}

static void
cmap_set_rel_pathlist(PlannerInfo *root, RelOptInfo *rel, Index rti,
					  RangeTblEntry *rte)
{
	RangeTblFunction *rtfunc;
	FuncExpr   *fexpr;
	CustomPath *cp;
	Cost		fs_cost;

	if (prev_set_rel_pathlist_hook)
		prev_set_rel_pathlist_hook(root, rel, rti, rte);

	if (!cmap_custom_scan || !cmap_preloaded || rte->rtekind != RTE_FUNCTION ||
		rte->funcordinality || list_length(rte->functions) != 1 ||
		rel->lateral_relids != NULL || rel->reloptkind != RELOPT_BASEREL)
		return;
	rtfunc = (RangeTblFunction *) linitial(rte->functions);
	if (!IsA(rtfunc->funcexpr, FuncExpr))
		return;
	fexpr = (FuncExpr *) rtfunc->funcexpr;
	if (list_length(fexpr->args) != 1 || contain_var_clause((Node *) fexpr->args) ||
		uses_whole_row(rel) || !is_cmap_iterate(fexpr->funcid))
		return;

	/*
	 * Cost it below the FunctionScan, which must materialise every row
	 * before returning the first.
	 */
	fs_cost = rel->cheapest_total_path ? rel->cheapest_total_path->total_cost :
		rel->rows * cpu_tuple_cost * 2;

	cp = makeNode(CustomPath);
	cp->path.pathtype = T_CustomScan;
	cp->path.parent = rel;
	cp->path.pathtarget = rel->reltarget;
	cp->path.param_info = NULL;
	cp->path.parallel_aware = false;
	cp->path.parallel_safe = false;
	cp->path.parallel_workers = 0;
	cp->path.rows = rel->rows;
	cp->path.startup_cost = 0;
	cp->path.total_cost = fs_cost / 2;
	cp->path.pathkeys = NIL;
	cp->flags = 0;
	cp->custom_paths = NIL;
	cp->custom_private = NIL;
	cp->methods = &cmap_path_methods;
	add_path(rel, &cp->path);
}

static Plan *
cmap_plan_path(PlannerInfo *root, RelOptInfo *rel, CustomPath *best_path,
			   List *tlist, List *clauses, List *custom_plans)
{
	CustomScan *cscan = makeNode(CustomScan);
	RangeTblEntry *rte = planner_rt_fetch(rel->relid, root);
	RangeTblFunction *rtfunc = (RangeTblFunction *) linitial(rte->functions);
	FuncExpr   *fexpr = (FuncExpr *) rtfunc->funcexpr;
	TupleDesc	tupdesc = get_expr_result_tupdesc((Node *) fexpr, false);
	List	   *scan_tlist = NIL;
	int			i;

	/*
	 * The scan tuple is the function's result row; the plan's target list
	 * and quals refer to it (setrefs turns their Vars into INDEX_VAR).
	 */
	for (i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);

		scan_tlist = lappend(scan_tlist,
							 makeTargetEntry((Expr *) makeVar(rel->relid, i + 1,
															  att->atttypid,
															  att->atttypmod,
															  att->attcollation, 0),
											 i + 1, pstrdup(NameStr(att->attname)),
											 false));
	}

	cscan->scan.plan.targetlist = tlist;
	cscan->scan.plan.qual = extract_actual_clauses(clauses, false);

	/* which columns are used at all: the others need not be built */
	{
		Bitmapset  *attrs = NULL;
		int			mask = 0;

		pull_varattnos((Node *) tlist, rel->relid, &attrs);
		pull_varattnos((Node *) cscan->scan.plan.qual, rel->relid, &attrs);
		for (i = 0; i < 3; i++)
			if (bms_is_member(i + 1 - FirstLowInvalidHeapAttributeNumber, attrs))
				mask |= 1 << i;
		/* [0] column mask, [1] function OID for the EXECUTE check */
		cscan->custom_private = lappend_int(list_make1_int(mask),
											(int) fexpr->funcid);
	}
	cscan->scan.scanrelid = 0;
	cscan->flags = best_path->flags;
	cscan->custom_plans = NIL;
	cscan->custom_exprs = copyObject(fexpr->args);
	cscan->custom_scan_tlist = scan_tlist;
	cscan->methods = &cmap_scan_methods;
	return &cscan->scan.plan;
}

static Node *
cmap_create_scan_state(CustomScan *cscan)
{
	CmapScanState *s = (CmapScanState *) newNode(sizeof(CmapScanState),
												 T_CustomScanState);

	s->css.methods = &cmap_exec_methods;
	s->started = false;
	s->it.ref = -1;
	return (Node *) s;
}

static void
cmap_begin_scan(CustomScanState *node, EState *estate, int eflags)
{
	CmapScanState *s = (CmapScanState *) node;
	CustomScan *cscan = (CustomScan *) node->ss.ps.plan;

	Oid			funcid = (Oid) lsecond_int(cscan->custom_private);
	AclResult	aclresult;

	/*
	 * The function is never called, so do what the executor does before
	 * calling one: check EXECUTE for the current user (plans are shared by
	 * roles, so this cannot be done at plan time) and run the hook.
	 */
	aclresult = pg_proc_aclcheck(funcid, GetUserId(), ACL_EXECUTE);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_FUNCTION, get_func_name(funcid));
	InvokeFunctionExecuteHook(funcid);

	s->prefix = ExecInitExpr((Expr *) linitial(cscan->custom_exprs), &node->ss.ps);
	s->mask = linitial_int(cscan->custom_private);
}

/* Evaluate the prefix and pin the version: at the first row, like the SRF. */
static void
cmap_scan_start(CmapScanState *s)
{
	ExprContext *econtext = s->css.ss.ps.ps_ExprContext;
	MemoryContext oldcxt;
	bool		isnull;
	Datum		prefix;

	cmap_check_loaded();
	prefix = ExecEvalExprSwitchContext(s->prefix, econtext, &isnull);
	oldcxt = MemoryContextSwitchTo(s->css.ss.ps.state->es_query_cxt);
	if (isnull)
		cmap_iter_begin(&s->it, NULL, 0);
	else
	{
		text	   *p = DatumGetTextPP(prefix);

		cmap_iter_begin(&s->it, VARDATA_ANY(p), VARSIZE_ANY_EXHDR(p));
	}
	MemoryContextSwitchTo(oldcxt);
	s->started = true;
}

static TupleTableSlot *
cmap_scan_next(ScanState *node)
{
	CmapScanState *s = (CmapScanState *) node;
	TupleTableSlot *slot = node->ss_ScanTupleSlot;

	if (!s->started)
		cmap_scan_start(s);
	CHECK_FOR_INTERRUPTS();
	ExecClearTuple(slot);
	if (!cmap_iter_next(&s->it, node->ps.ps_ExprContext->ecxt_per_tuple_memory,
						s->mask, slot->tts_values, slot->tts_isnull))
	{
		cmap_iter_end(&s->it);	/* done: release the pin right away */
		return slot;
	}
	return ExecStoreVirtualTuple(slot);
}

static bool
cmap_scan_recheck(ScanState *node, TupleTableSlot *slot)
{
	return true;
}

static TupleTableSlot *
cmap_exec_scan(CustomScanState *node)
{
	return ExecScan(&node->ss, (ExecScanAccessMtd) cmap_scan_next,
					(ExecScanRecheckMtd) cmap_scan_recheck);
}

static void
cmap_end_scan(CustomScanState *node)
{
	cmap_iter_end(&((CmapScanState *) node)->it);
}

static void
cmap_rescan(CustomScanState *node)
{
	CmapScanState *s = (CmapScanState *) node;

	cmap_iter_end(&s->it);
	s->started = false;
}
