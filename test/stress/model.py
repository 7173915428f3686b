#!/usr/bin/python3
#
# test/stress/model.py: model-based test of cmapext.
#
# Random single-session operation sequences run against the database named
# by the libpq environment and, step by step, against a small Python model
# of the contract (design.md sections 1-2 and the helper brief):
#
#   - an ordered map in byte order (keys compared as UTF-8 bytes), a map
#     version that grows by exactly one per commit that changes something,
#     and the version of the commit that last wrote each entry;
#   - a transaction batch of per-key pending operations (put, delete,
#     increment, validation-only) laid over the transaction's view
#     (read-your-writes), discarded by ROLLBACK and ROLLBACK TO SAVEPOINT;
#   - conditional operations that record what they read (also through a
#     pending increment, whose value is the snapshot's plus the delta) and
#     fail COMMIT with 40001 when the key changed since: entry version for
#     a present key, any write since for an absent one (A -> B -> A counts).
#     The first read of a key counts; a later read, a later blind write or a
#     cmap_clear() in the same transaction does not excuse it.  Here the
#     other committer is the session itself, in immediate mode.  40001 is
#     also accepted (not required) for an absence when some key was deleted
#     or the map cleared since: the implementation's documented conservative
#     tracking of deletions per hash slot;
#   - increments that add to the value current at commit, with 22003 only
#     when a value (not an intermediate sum of deltas) is out of range;
#   - immediate mode (cmapext.transactional = off, a transactional setting
#     itself: ROLLBACK and ROLLBACK TO SAVEPOINT undo the SET), deciding on
#     and publishing to the latest version at once;
#   - READ COMMITTED and REPEATABLE READ (snapshot fixed at the first query
#     of the transaction);
#   - the errors: 22004 (NULL), 54000 (key over 1024 bytes), 22P02/22003
#     (increment of a non-integer / out of range), 40001, 25P02.
#
# Keys come from a small space (frequent collisions) with multi-byte and
# long keys (up to 1024 bytes, and a few over the limit); values include
# out-of-line ones (> 512 bytes) and occasionally ~100 KB.
#
# Every sequence has its own seed, derived from MODEL_SEED (default fixed,
# printed).  On a mismatch the sequence is shrunk (delta debugging, replaying
# candidate subsequences against a fresh session) and the minimal SQL script
# that reproduces it is printed with the expected results.
#
# Environment: MODEL_SEED (default 42), MODEL_SECONDS (time budget, default
# 30), MODEL_SEQUENCES (stop after this many sequences), MODEL_LENGTH
# (actions per sequence, default 150).  To rerun one failing sequence:
# MODEL_SEED=<its seed> MODEL_SEQUENCES=1.
#

import collections
import copy
import os
import random
import re
import sys
import time

import psycopg2

SEED = int(os.environ.get("MODEL_SEED", "42"))
SECONDS = float(os.environ.get("MODEL_SECONDS", "30"))
MAX_SEQUENCES = int(os.environ.get("MODEL_SEQUENCES", "0")) or None
LENGTH = int(os.environ.get("MODEL_LENGTH", "150"))
MAX_REPORTED = 5            # failures shrunk and printed per run
SHRINK_SECONDS = 15         # time budget of one shrink

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

SHORT_KEYS = ["", "a", "ab", "abc", "ab\u00e9", "b", "B", "a b", "k1", "k10", "k2",
              "e", "\u00e9", "z", "\u20ac", "\U0001f600", "n"]
LONG_KEYS = ["a" * 1024, "a" * 1023 + "b", "\u00e9" * 512, "x" * 600, "ab" + "c" * 1000]
TOO_LONG_KEYS = ["a" * 1025, "\u00e9" * 512 + "a"]
PREFIXES = [None, "", "a", "ab", "abc", "b", "k", "k1", "\u00e9", "\u00e9\u00e9", "zz",
            "a" * 1000, "\U0001f600", "x", "bulk:", "bulk:05"]
VALUES = ["x", "y", "xy", "", "0", "1", "42", "-7", " 5 ", "+3", "abc", "12a", "\u00e9\u20ac",
          "9223372036854775807", "-9223372036854775808", "99999999999999999999"]


class ModelError(Exception):
    """The model predicts an error; codes is the set of acceptable SQLSTATEs."""

    def __init__(self, *codes):
        super().__init__(codes)
        self.codes = set(codes)


def bkey(k):
    return k.encode("utf-8")


def parse_int8(s):
    """cmap_increment's reading of a stored value (like int8in)."""
    t = s.strip(" \t\n")
    if len(t) == 0 or len(t) >= 32 or not re.fullmatch(r"[ \t\n\v\f\r]*[+-]?[0-9]+", t):
        raise ModelError("22P02")
    v = int(t)
    if v < INT64_MIN or v > INT64_MAX:
        raise ModelError("22003")
    return v


def add_int8(a, b):
    r = a + b
    if r < INT64_MIN or r > INT64_MAX:
        raise ModelError("22003")
    return r


def check_key(k):
    if k is None:
        raise ModelError("22004")
    if len(bkey(k)) > 1024:
        raise ModelError("54000")


def check_value(v):
    if v is None:
        raise ModelError("22004")


class MaybeCommit:
    """COMMIT may succeed or fail with one of codes."""

    def __init__(self, codes):
        self.codes = set(codes)

    def __repr__(self):
        return "'COMMIT' or error " + "/".join(sorted(self.codes))


class Entry:
    """A pending per-key operation of the transaction."""
    __slots__ = ("op", "value", "delta", "dep")

    def __init__(self):
        self.op = None          # PUT, DEL, INCR, CHECK
        self.value = None
        self.delta = 0
        self.dep = None         # None, ("V", entry version), ("A",) = absent


class Batch:
    def __init__(self):
        self.cleared = False
        self.ops = {}


class Model:
    def __init__(self, version):
        self.committed = {}     # key -> (value, entry version)
        self.version = version
        self.guc_on = True
        self.in_txn = False
        self.aborted = False
        self.rr = False
        self.rr_snap = None     # (dict, version) once the RR snapshot is taken
        self.batch = Batch()
        self.savepoints = []    # (name, batch copy, guc)
        self.start_guc = True
        self.touched = {}       # key -> version of the last commit that wrote or deleted it
        self.last_delete = 0    # version of the last commit that deleted a key or cleared

    # --- applicability (the generator and the shrinker both use this) ----
    def applicable(self, a):
        kind = a[0]
        if kind == "begin":
            return not self.in_txn
        if kind in ("commit", "rollback"):
            return self.in_txn
        if kind == "savepoint":
            return self.in_txn
        if kind in ("rollback_to", "release"):
            return self.in_txn and any(n == a[1] for n, _, _ in self.savepoints)
        if kind == "check":
            return not self.in_txn
        return True

    # --- views --------------------------------------------------------------
    def begin_statement(self):
        """A SELECT starts: under REPEATABLE READ it fixes the snapshot."""
        if self.in_txn and self.aborted:
            raise ModelError("25P02")
        if self.in_txn and self.rr and self.rr_snap is None:
            self.rr_snap = (dict(self.committed), self.version)

    def base(self):
        if self.in_txn and self.rr and self.rr_snap is not None:
            return self.rr_snap[0]
        return self.committed

    def view_version(self):
        if self.in_txn and self.rr and self.rr_snap is not None:
            return self.rr_snap[1]
        return self.version

    def read(self, k):
        """(found, value, dep) in the transaction's view.  dep is what the
        value owes to the snapshot, None when it is the transaction's own
        write alone: ("V", entry version) or ("A", view version) = absent."""
        e = self.batch.ops.get(k)
        if e is not None and e.op == "CHECK":
            e = None
        if e is not None and e.op != "INCR":
            return (e.op == "PUT", e.value, None)
        if self.batch.cleared:
            # absent because the transaction cleared the map: its own write
            return (False, None, None)
        base = self.base()
        found = k in base
        value, ver = base[k] if found else (None, None)
        dep = ("V", ver) if found else ("A", self.view_version())
        if e is not None:
            # a pending increment: the snapshot's value plus our delta
            b = parse_int8(value) if found else 0
            return (True, str(add_int8(b, e.delta)), dep)
        return (found, value, dep)

    def view_keys(self):
        keys = set() if self.batch.cleared else set(self.base())
        for k, e in self.batch.ops.items():
            if e.op == "DEL":
                keys.discard(k)
            elif e.op in ("PUT", "INCR"):
                keys.add(k)
        return keys

    def entry(self, k):
        e = self.batch.ops.get(k)
        if e is None:
            e = self.batch.ops[k] = Entry()
        return e

    def note_dep(self, k, dep):
        """A conditional op decided on (a value owing to) the snapshot:
        remember what it read.  The first read of a key is the one a later
        change invalidates (a second read does not excuse the first)."""
        if dep is None:
            return
        e = self.entry(k)
        if e.dep is None:
            e.dep = dep
        if e.op is None:
            e.op = "CHECK"

    # --- transactional writes (into the batch) -----------------------------
    def t_store(self, k, v):
        e = self.entry(k)
        e.op, e.value, e.delta = "PUT", v, 0

    def t_delete(self, k):
        found = self.read(k)[0]
        e = self.entry(k)
        e.op, e.value, e.delta = "DEL", None, 0
        return found

    def t_swap(self, k, v):
        found, old, _ = self.read(k)
        self.t_store(k, v)
        return old if found else None

    def t_load_or_store(self, k, v):
        found, old, dep = self.read(k)
        self.note_dep(k, dep)
        if found:
            return old
        self.t_store(k, v)
        return v

    def t_cas(self, k, old, new):
        found, cur, dep = self.read(k)
        match = found and cur == old
        self.note_dep(k, dep)
        if match:
            self.t_store(k, new)
        return match

    def t_cad(self, k, old):
        found, cur, dep = self.read(k)
        match = found and cur == old
        self.note_dep(k, dep)
        if match:
            e = self.entry(k)
            e.op, e.value, e.delta = "DEL", None, 0
        return match

    def t_incr(self, k, d):
        found, cur, _ = self.read(k)
        result = add_int8(parse_int8(cur) if found else 0, d)
        e = self.entry(k)
        if e.op in ("PUT", "DEL") or self.batch.cleared:
            e.op, e.value, e.delta = "PUT", str(result), 0
        elif e.op == "INCR":
            e.delta += d
        else:
            e.op, e.delta = "INCR", d
        return result

    def t_clear(self):
        """Pending writes go; what earlier conditional ops read still counts
        (the contract: a change to a key they depended on fails COMMIT)."""
        n = len(self.view_keys())
        kept = {}
        for k, e in self.batch.ops.items():
            if e.dep is not None:
                c = Entry()
                c.op, c.dep = "CHECK", e.dep
                kept[k] = c
        self.batch.ops = kept
        self.batch.cleared = True
        return n

    # --- immediate mode (publish now, decide on the latest version) --------
    def publish_put(self, k, v):
        self.version += 1
        self.committed[k] = (v, self.version)
        self.touched[k] = self.version

    def publish_delete(self, k):
        self.version += 1
        del self.committed[k]
        self.touched[k] = self.last_delete = self.version

    def immediate(self, kind, k, args):
        c = self.committed
        found = k in c if k is not None else False
        cur = c[k][0] if found else None
        if kind == "store":
            self.publish_put(k, args[0])
            return None
        if kind == "delete":
            if found:
                self.publish_delete(k)
            return found
        if kind == "swap":
            self.publish_put(k, args[0])
            return cur
        if kind == "los":
            if found:
                return cur
            self.publish_put(k, args[0])
            return args[0]
        if kind == "cas":
            match = found and cur == args[0]
            if match:
                self.publish_put(k, args[1])
            return match
        if kind == "cad":
            match = found and cur == args[0]
            if match:
                self.publish_delete(k)
            return match
        if kind == "incr":
            r = add_int8(parse_int8(cur) if found else 0, args[0])
            self.publish_put(k, str(r))
            return r
        if kind == "clear":
            n = len(c)
            if n > 0:
                self.version += 1
                for x in c:
                    self.touched[x] = self.version
                self.last_delete = self.version
                self.committed = {}
            return n
        raise AssertionError(kind)

    # --- commit ---------------------------------------------------------------
    def validate(self):
        """What COMMIT must fail with, and what it may fail with.

        Must: 40001 when a key a conditional op depended on changed since
        (entry version; for an absent key: written since, even if deleted
        again), 22P02/22003 for an increment of a value that is not an
        integer or would overflow.  May: 40001 for an absence when some key
        was deleted or the map cleared since (the implementation tracks
        deletions per hash slot: a documented, conservative false conflict).
        """
        base = {} if self.batch.cleared else self.committed
        latest = self.committed
        must, may = set(), set()
        for k in self.batch.ops:
            e = self.batch.ops[k]
            if e.dep is not None:
                if e.dep[0] == "A":
                    if k in latest or self.touched.get(k, -1) > e.dep[1]:
                        must.add("40001")
                    elif self.last_delete > e.dep[1]:
                        may.add("40001")
                elif k not in latest or latest[k][1] != e.dep[1]:
                    must.add("40001")
            if e.op == "INCR":
                try:
                    add_int8(parse_int8(base[k][0]) if k in base else 0, e.delta)
                except ModelError as err:
                    must |= err.codes
        return must, may

    def commit_batch(self):
        """Validate (strictly) and apply the batch to the latest version."""
        must, may = self.validate()
        if must or may:
            raise ModelError(*(must | may))
        self.apply_batch()

    def apply_batch(self):
        newv = self.version + 1
        changed = False
        touched = {}
        deleted = False
        if self.batch.cleared and self.committed:
            touched = {x: newv for x in self.committed}
            deleted = True
            self.committed = {}
            changed = True
        for k in sorted(self.batch.ops, key=bkey):
            e = self.batch.ops[k]
            if e.op == "PUT":
                self.committed[k] = (e.value, newv)
                touched[k] = newv
                changed = True
            elif e.op == "DEL":
                if k in self.committed:
                    del self.committed[k]
                    touched[k] = newv
                    deleted = True
                    changed = True
            elif e.op == "INCR":
                b = parse_int8(self.committed[k][0]) if k in self.committed else 0
                self.committed[k] = (str(b + e.delta), newv)
                touched[k] = newv
                changed = True
        if changed:
            self.version = newv
            self.touched.update(touched)
            if deleted:
                self.last_delete = newv

    def resolve_commit(self, committed):
        """After a MaybeCommit: follow what the server did."""
        if committed:
            self.apply_batch()
        self.end_txn(committed)

    def end_txn(self, keep_guc):
        if not keep_guc:
            self.guc_on = self.start_guc
        self.in_txn = False
        self.aborted = False
        self.rr = False
        self.rr_snap = None
        self.batch = Batch()
        self.savepoints = []

    # --- one action -> expected result (or ModelError) -----------------------
    def step(self, a):
        kind = a[0]
        if kind == "begin":
            self.in_txn, self.aborted, self.rr, self.rr_snap = True, False, a[1] == "rr", None
            self.batch = Batch()
            self.savepoints = []
            self.start_guc = self.guc_on
            return None
        if kind == "commit":
            if self.aborted:
                self.end_txn(False)
                return "ROLLBACK"
            must, may = self.validate()
            if must:
                self.end_txn(False)
                raise ModelError(*must)
            if may:
                return MaybeCommit(may)     # resolved by resolve_commit()
            self.apply_batch()
            self.end_txn(True)
            return "COMMIT"
        if kind == "rollback":
            self.end_txn(False)
            return "ROLLBACK"
        if kind == "rollback_to":
            while self.savepoints[-1][0] != a[1]:
                self.savepoints.pop()
            _, b, g = self.savepoints[-1]
            self.batch = copy.deepcopy(b)
            self.guc_on = g
            self.aborted = False
            return None
        if kind in ("savepoint", "release", "set"):
            if self.in_txn and self.aborted:
                raise ModelError("25P02")
            if kind == "savepoint":
                self.savepoints.append((a[1], copy.deepcopy(self.batch), self.guc_on))
            elif kind == "release":
                while self.savepoints.pop()[0] != a[1]:
                    pass
            else:
                self.guc_on = a[1]
            return None
        # everything else is one SELECT
        self.begin_statement()
        if self.in_txn:
            try:
                return self.select(a)
            except ModelError:
                self.aborted = True
                raise
        # autocommit: the statement is a transaction of its own (an error
        # discards its batch; immediate-mode writes done before stay)
        self.in_txn, self.rr, self.rr_snap, self.batch = True, False, None, Batch()
        try:
            r = self.select(a)
            self.commit_batch()
        finally:
            self.in_txn, self.batch = False, Batch()
        return r

    def select(self, a):
        kind = a[0]
        if kind == "load":
            check_key(a[1])
            found, v, _ = self.read(a[1])
            return v if found else None
        if kind == "count":
            return len(self.view_keys())
        if kind == "version":
            return self.view_version()
        if kind == "iterate":
            return self.iterate(a[1])
        if kind == "check":
            rows = self.iterate(None)
            return (rows, self.version, len(rows))
        if kind in ("bulk_store", "bulk_incr"):
            # one statement writing keys bulk:001..bulk:n in ascending order
            check_value(a[1])
            total = 0
            for i in range(1, a[2] + 1):
                k = "bulk:%03d" % i
                if kind == "bulk_store":
                    self.select(("store", k, a[1]))
                else:
                    total += self.select(("incr", k, int(a[1])))
            return a[2] if kind == "bulk_store" else total
        # writers
        if kind != "clear":
            check_key(a[1])
        args = a[2:]
        for v in args:
            if kind != "incr":
                check_value(v)
            elif v is None:
                raise ModelError("22004")
        if not self.guc_on:
            return self.immediate(kind, a[1] if kind != "clear" else None, args)
        fn = {"store": self.t_store, "delete": self.t_delete, "swap": self.t_swap,
              "los": self.t_load_or_store, "cas": self.t_cas, "cad": self.t_cad,
              "incr": self.t_incr}
        if kind == "clear":
            return self.t_clear()
        return fn[kind](a[1], *args)

    def iterate(self, prefix):
        p = bkey(prefix) if prefix else b""
        rows = []
        for k in sorted((k for k in self.view_keys() if bkey(k).startswith(p)), key=bkey):
            e = self.batch.ops.get(k)
            if e is not None and e.op in ("PUT", "INCR"):
                rows.append((k, self.read(k)[1], None))
            else:
                v, ver = self.base()[k]
                rows.append((k, v, ver))
        return rows


# ---------------------------------------------------------------------------
# SQL for an action
# ---------------------------------------------------------------------------

SQL = {
    "store": ("SELECT cmap_store(%s, %s)", "void"),
    "delete": ("SELECT cmap_delete(%s)", "one"),
    "swap": ("SELECT cmap_swap(%s, %s)", "one"),
    "los": ("SELECT cmap_load_or_store(%s, %s)", "one"),
    "cas": ("SELECT cmap_compare_and_swap(%s, %s, %s)", "one"),
    "cad": ("SELECT cmap_compare_and_delete(%s, %s)", "one"),
    "incr": ("SELECT cmap_increment(%s, %s::bigint)", "one"),
    "clear": ("SELECT cmap_clear()", "one"),
    "load": ("SELECT cmap_load(%s)", "one"),
    "count": ("SELECT cmap_count()", "one"),
    "version": ("SELECT cmap_version()", "one"),
    "iterate": ("SELECT key, value, version FROM cmap_iterate(%s)", "rows"),
    "bulk_store": ("SELECT count(cmap_store(format('bulk:%%s', lpad(i::text, 3, '0')), %s)) "
                   "FROM generate_series(1, %s) i", "one"),
    "bulk_incr": ("SELECT sum(cmap_increment(format('bulk:%%s', lpad(i::text, 3, '0')), %s::bigint)) "
                  "FROM generate_series(1, %s) i", "one"),
}


def sql_args(a):
    """Parameters of an action's SELECT (deltas travel as text, so that
    -9223372036854775808 needs no special casing)."""
    if a[0] == "incr":
        return (a[1], None if a[2] is None else str(a[2]))
    return a[1:]


def run_action(cur, a):
    """Execute an action; returns its result or raises psycopg2.Error."""
    kind = a[0]
    if kind == "begin":
        cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ" if a[1] == "rr" else "BEGIN")
        return None
    if kind in ("commit", "rollback"):
        cur.execute(kind.upper())
        return cur.statusmessage
    if kind == "savepoint":
        cur.execute("SAVEPOINT " + a[1])
        return None
    if kind == "rollback_to":
        cur.execute("ROLLBACK TO SAVEPOINT " + a[1])
        return None
    if kind == "release":
        cur.execute("RELEASE SAVEPOINT " + a[1])
        return None
    if kind == "set":
        cur.execute("SET cmapext.transactional = " + ("on" if a[1] else "off"))
        return None
    if kind == "check":
        cur.execute("SELECT key, value, version FROM cmap_iterate()")
        rows = [tuple(r) for r in cur.fetchall()]
        cur.execute("SELECT s.version, s.entries, cmap_count() FROM cmap_stats() s")
        sv, se, cnt = cur.fetchone()
        if se != cnt:
            return (rows, sv, ("stats entries %d but cmap_count() %d" % (se, cnt)))
        return (rows, sv, se)
    sql, shape = SQL[kind]
    cur.execute(sql, sql_args(a))
    if shape == "rows":
        return [tuple(r) for r in cur.fetchall()]
    r = cur.fetchone()[0]
    return None if shape == "void" else r


def lit(s):
    """An SQL literal for a string, compact for long runs of one character."""
    if s is None:
        return "NULL"
    if isinstance(s, int):
        return str(s)
    if len(s) <= 60:
        return "'" + s.replace("'", "''") + "'"
    parts = []
    for m in re.finditer(r"(.)\1*", s, re.S):
        run = m.group(0)
        if len(run) >= 8:
            parts.append("repeat(%s, %d)" % (lit(run[0]), len(run)))
        elif parts and parts[-1].startswith("'"):
            parts[-1] = lit(parts[-1][1:-1].replace("''", "'") + run)
        else:
            parts.append(lit(run))
    return " || ".join(parts)


def show(v):
    if isinstance(v, str):
        return lit(v) if len(v) <= 60 else lit(v)[:120] + ("... (%d chars)" % len(v))
    if isinstance(v, list):
        return "%d rows: " % len(v) + ", ".join("(%s, %s, %s)" % (show(k), show(x), ver)
                                                 for k, x, ver in v[:8]) + (" ..." if len(v) > 8 else "")
    return repr(v)


def action_sql(a):
    kind = a[0]
    if kind == "begin":
        return "BEGIN ISOLATION LEVEL REPEATABLE READ;" if a[1] == "rr" else "BEGIN;"
    if kind in ("commit", "rollback"):
        return kind.upper() + ";"
    if kind == "savepoint":
        return "SAVEPOINT %s;" % a[1]
    if kind == "rollback_to":
        return "ROLLBACK TO SAVEPOINT %s;" % a[1]
    if kind == "release":
        return "RELEASE SAVEPOINT %s;" % a[1]
    if kind == "set":
        return "SET cmapext.transactional = %s;" % ("on" if a[1] else "off")
    if kind == "check":
        return ("SELECT key, value, version FROM cmap_iterate();  "
                "SELECT version, entries FROM cmap_stats();")
    sql = SQL[kind][0]
    args = [lit(x) for x in sql_args(a)]
    return (sql % tuple(args)) + ";"


# ---------------------------------------------------------------------------
# Running and comparing
# ---------------------------------------------------------------------------

def fresh_session():
    conn = psycopg2.connect("", application_name="cmapext-model")
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SET statement_timeout = '60s'")
    cur.execute("SELECT cmap_clear()")
    cur.execute("SELECT cmap_version()")
    return conn, cur, Model(cur.fetchone()[0])


def describe(r):
    if isinstance(r, ModelError):
        return "error " + "/".join(sorted(r.codes))
    if isinstance(r, psycopg2.Error):
        return "error %s (%s)" % (r.pgcode, (r.pgerror or "").strip().split("\n")[0][:150])
    if isinstance(r, tuple) and len(r) == 3:
        return "%s; stats version %s, entries %s" % (show(r[0]), r[1], r[2])
    return show(r)


OUTCOMES = collections.Counter()     # (action kind, "ok" or SQLSTATE), main runs only


def execute(actions, log=None, tally=False):
    """Run actions on a fresh session and the model; return None or a
    mismatch description.  Actions not applicable in the model's state are
    skipped (the shrinker relies on this).  log collects (action, expected)."""
    conn, cur, m = fresh_session()
    try:
        for i, a in enumerate(actions):
            if not m.applicable(a):
                continue
            immediate = not m.guc_on and a[0] in SQL
            try:
                want = m.step(a)
            except ModelError as e:
                want = e
            try:
                got = run_action(cur, a)
            except psycopg2.Error as e:
                got = e
            if log is not None:
                log.append((a, want))
            if tally:
                OUTCOMES[(a[0] + (" (immediate)" if immediate else ""),
                          got.pgcode if isinstance(got, psycopg2.Error) else "ok")] += 1
            if isinstance(want, MaybeCommit):
                # the server decides between the allowed outcomes
                failed = isinstance(got, psycopg2.Error) and got.pgcode in want.codes
                m.resolve_commit(not failed)
                if failed or got == "COMMIT":
                    continue
            ok = (want.__class__ is ModelError and isinstance(got, psycopg2.Error)
                  and got.pgcode in want.codes) or \
                 (not isinstance(want, ModelError) and not isinstance(got, psycopg2.Error)
                  and (a[0] in ("begin", "savepoint", "rollback_to", "release", "set", "store") or
                       want == got))
            if not ok:
                return "step %d: %s\n  expected: %s\n  actual:   %s" % (
                    i, action_sql(a), describe(want), describe(got))
        return None
    finally:
        try:
            conn.close()
        except psycopg2.Error:
            pass


def shrink(actions):
    """Delta debugging: a smaller action list that still mismatches."""
    deadline = time.time() + SHRINK_SECONDS
    n = 2
    while len(actions) >= 2 and time.time() < deadline:
        chunk = max(1, len(actions) // n)
        reduced = False
        for start in range(0, len(actions), chunk):
            cand = actions[:start] + actions[start + chunk:]
            if execute(cand) is not None:
                actions = cand
                n = max(n - 1, 2)
                reduced = True
                break
            if time.time() > deadline:
                break
        if not reduced:
            if chunk == 1:
                break
            n = min(len(actions), n * 2)
    return actions


# ---------------------------------------------------------------------------
# Generating actions
# ---------------------------------------------------------------------------

class Generator:
    def __init__(self, rng):
        self.rng = rng
        self.spn = 0
        # each sequence works on a few keys, so that operations collide
        self.keys = rng.sample(SHORT_KEYS, rng.randint(3, 7)) + \
            rng.sample(LONG_KEYS, rng.randint(0, 2))

    def key(self):
        r = self.rng.random()
        if r < 0.90:
            return self.rng.choice(self.keys)
        if r < 0.97:
            return self.rng.choice(SHORT_KEYS + LONG_KEYS)
        if r < 0.99:
            return self.rng.choice(TOO_LONG_KEYS)
        return None

    def value(self):
        r = self.rng.random()
        if r < 0.75:
            return self.rng.choice(VALUES)
        if r < 0.85:
            return "v%d" % self.rng.randrange(100)
        if r < 0.97:
            return "L%d" % self.rng.randrange(5) + "y" * self.rng.randint(513, 2000)
        if r < 0.995:
            return "H" * self.rng.randint(95000, 105000)
        return None

    def current(self, m, k):
        try:
            f, v, _ = m.read(k)
            return v if f else None
        except ModelError:
            return None

    def expected(self, m, k):
        """The old value of a CAS/CAD: mostly the current one."""
        cur = self.current(m, k) if self.rng.random() < 0.6 else None
        return cur if cur is not None else self.value()

    def delta(self):
        r = self.rng.random()
        if r < 0.9:
            return self.rng.randint(-1000, 1000)
        if r < 0.99:
            return self.rng.choice([INT64_MAX, INT64_MIN, INT64_MAX - 5, -INT64_MAX])
        return None

    def map_op(self, m):
        r = self.rng.random()
        k = self.key()
        if r < 0.16:
            return ("store", k, self.value())
        if r < 0.26:
            return ("delete", k)
        if r < 0.34:
            return ("swap", k, self.value())
        if r < 0.42:
            return ("los", k, self.value())
        if r < 0.50:
            return ("cas", k, self.expected(m, k), self.value())
        if r < 0.56:
            return ("cad", k, self.expected(m, k))
        if r < 0.66:
            # mostly on keys that hold integers, so most increments work
            ints = [x for x in self.keys
                    if re.fullmatch(r"-?[0-9]{1,6}", self.current(m, x) or "x")]
            if ints and self.rng.random() < 0.7:
                k = self.rng.choice(ints)
            return ("incr", k, self.delta())
        if r < 0.675:
            return ("clear",)
        if r < 0.685:
            # more keys than the small-batch limit (64): the other commit path
            n = self.rng.randint(60, 100)
            if self.rng.random() < 0.5:
                return ("bulk_store", self.value(), n)
            return ("bulk_incr", str(self.rng.randint(-50, 50)), n)
        if r < 0.80:
            return ("load", k)
        if r < 0.85:
            return ("count",)
        if r < 0.88:
            return ("version",)
        return ("iterate", self.rng.choice(PREFIXES))

    def next(self, m):
        r = self.rng.random()
        if not m.in_txn:
            if r < 0.12:
                return ("begin", "rr" if self.rng.random() < 0.3 else "rc")
            if r < 0.16:
                return ("set", self.rng.random() < 0.6)
            if r < 0.20:
                return ("check",)
            return self.map_op(m)
        if m.aborted:
            if m.savepoints and r < 0.5:
                return ("rollback_to", self.rng.choice(m.savepoints)[0])
            if r < 0.75:
                return ("rollback",)
            if r < 0.9:
                return ("commit",)
            return self.map_op(m)
        if r < 0.06:
            return ("commit",)
        if r < 0.09:
            return ("rollback",)
        if r < 0.16:
            self.spn += 1
            return ("savepoint", "sp%d" % self.spn)
        if r < 0.21 and m.savepoints:
            return ("rollback_to", self.rng.choice(m.savepoints)[0])
        if r < 0.24 and m.savepoints:
            return ("release", self.rng.choice(m.savepoints)[0])
        if r < 0.27:
            return ("set", self.rng.random() < 0.6)
        return self.map_op(m)


def generate(seed):
    """The action list of one sequence (generated against the model alone)."""
    rng = random.Random(seed)
    g = Generator(rng)
    m = Model(0)
    actions = []
    for _ in range(LENGTH):
        a = g.next(m)
        actions.append(a)
        try:
            if isinstance(m.step(a), MaybeCommit):
                m.resolve_commit(True)
        except ModelError:
            pass
    if m.in_txn:
        actions.append(("commit",) if rng.random() < 0.5 else ("rollback",))
    actions.append(("check",))
    return actions


CATEGORY = {"store": "write", "delete": "write", "swap": "write",
            "los": "conditional", "cas": "conditional", "cad": "conditional",
            "bulk_store": "bulk", "bulk_incr": "bulk",
            "load": "read", "count": "read", "iterate": "read", "version": "read", "check": "read",
            "commit": "end", "rollback": "end",
            "savepoint": "savepoint", "rollback_to": "savepoint", "release": "savepoint"}


def report(seed, actions, first, small):
    print("\nMISMATCH in sequence seed %d (rerun: MODEL_SEED=%d MODEL_SEQUENCES=1)" % (seed, seed))
    print("first difference: " + first)
    log = []
    why = execute(small, log)
    if why is None:         # not reproducible on replay: print the original
        print("NOT REPRODUCIBLE on replay (timing-dependent?); the original sequence follows")
        small, log = actions, []
        why = execute(small, log) or first
    print("minimal reproduction (%d of %d actions), on an empty map in a fresh session "
          "(start with SELECT cmap_clear(); versions are relative to cmap_version() then):"
          % (len(small), len(actions)))
    for a, want in log:
        print("  %-70s -- expect %s" % (action_sql(a), describe(want)))
    print("difference: " + why)


def main():
    print("model: base seed %d, %d actions per sequence, budget %.0f s" % (SEED, LENGTH, SECONDS),
          flush=True)
    t0 = time.time()
    n = 0
    steps = 0
    failures = []
    while time.time() - t0 < SECONDS and (MAX_SEQUENCES is None or n < MAX_SEQUENCES):
        seed = SEED if n == 0 else SEED * 100003 + n
        actions = generate(seed)
        n += 1
        steps += len(actions)
        why = execute(actions, tally=True)
        if why is not None:
            failures.append((seed, actions, why))
            print("MISMATCH in sequence seed %d: %s" % (seed, " ".join(why.split())[:200]), flush=True)
    elapsed = time.time() - t0

    # shrink failures and print one reproduction per kind (the kinds of
    # actions left in the shrunk sequence), within a bounded time
    printed = set()
    deadline = time.time() + 4 * SHRINK_SECONDS
    for seed, actions, why in failures[:12]:
        if len(printed) >= MAX_REPORTED or time.time() > deadline:
            break
        small = shrink(actions)
        sig = tuple(sorted({CATEGORY.get(a[0], a[0]) for a in small}))
        if sig not in printed:
            printed.add(sig)
            report(seed, actions, why, small)
    print("\noutcomes checked against the model (action: ok / SQLSTATE counts):")
    kinds = sorted({k for k, _ in OUTCOMES})
    for k in kinds:
        parts = ["%s %d" % (o, OUTCOMES[(k, o)]) for o in sorted({o for kk, o in OUTCOMES if kk == k})]
        print("  %-28s %s" % (k, ", ".join(parts)))
    print("\nmodel summary: %d sequences, %d actions, %d mismatching sequences, %.1f s "
          "(plus %.1f s shrinking)" % (n, steps, len(failures), elapsed, time.time() - t0 - elapsed))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
