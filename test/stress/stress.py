#!/usr/bin/python3
#
# test/stress/stress.py: multi-session stress test of cmapext.
#
# Several writer and reader sessions run for STRESS_SECONDS against the
# database named by the libpq environment (run.sh sets PGHOST, PGPORT,
# PGDATABASE).  What it checks:
#
#   accounts  acct:0000..acct:0099 hold integer balances with a known total.
#             Transfer writers move random amounts with cmap_increment
#             (negative and positive deltas) in BEGIN/COMMIT blocks (READ
#             COMMITTED and REPEATABLE READ, some with rolled-back savepoints,
#             some rolled back entirely, a few larger than the small-batch
#             limit), in single autocommit statements and in multi-statement
#             implicit transactions.  Inside their transactions they check
#             read-your-writes: the total they see is unchanged after every
#             complete transfer, and under REPEATABLE READ each increment
#             returns snapshot value + own deltas.
#   rnd:*     random writers own disjoint key sets; they store, delete and
#             swap in multi-key transactions with savepoints and rollbacks,
#             check every value returned (swap, delete, load, iterate over
#             their own keys) against a driver-side model, and apply the
#             model only on a confirmed COMMIT.
#   cnt:*     shared counters advanced only from the value in the
#             transaction's view: by compare-and-swap, or by load_or_store
#             (a validated read) followed by a blind store of the next value.
#             A successful commit counts, 40001 is an expected outcome.  Final
#             value = confirmed increments (a lost update would show here).
#             Also autocommit CAS, which must never fail with 40001.
#   slot:*    shared slots claimed with load_or_store and released with
#             compare_and_delete; at most one confirmed holder per slot, and
#             its tag is the slot's value.
#   readers   READ COMMITTED and REPEATABLE READ sessions check that every
#             cmap_iterate() result is strictly increasing in byte order, the
#             accounts total is constant in every statement (iterate, and
#             100 loads in one statement), cmap_count() equals the rows of an
#             iteration over the same view, two iterations in one REPEATABLE
#             READ transaction are identical, entry versions never exceed the
#             snapshot version, cmap_version() never decreases within a
#             session, counters never go backwards, and a streaming cursor
#             sees one consistent version while writers commit.
#   the end   the map equals the union of the writers' models, the total is
#             unchanged, no snapshot is pinned once the sessions are gone,
#             and retained_bytes drops to 0 (bounded poll).
#
# Prints the operations done per kind and the violations found; exits 1 on
# any violation or unexpected error.
#
# Environment: STRESS_SECONDS (default 60), STRESS_SEED (default fixed;
# the interleaving is not reproducible anyway, only each session's choices).
#

import collections
import os
import random
import sys
import threading
import time
import traceback

import psycopg2
import psycopg2.errors

DURATION = float(os.environ.get("STRESS_SECONDS", "60"))
SEED = int(os.environ.get("STRESS_SEED", "20260101"))

N_ACCOUNTS = 100
START_BALANCE = 1000
TOTAL = N_ACCOUNTS * START_BALANCE
ACCOUNTS = ["acct:%04d" % i for i in range(N_ACCOUNTS)]
N_COUNTERS = 5
COUNTERS = ["cnt:%d" % i for i in range(N_COUNTERS)]
N_SLOTS = 8
SLOTS = ["slot:%d" % i for i in range(N_SLOTS)]
KEYS_PER_WRITER = 150

N_TRANSFER = 4
N_RANDOM = 4
N_RC_READERS = 2
N_RR_READERS = 2
N_CURSOR_READERS = 1

SERIALIZATION_FAILURE = "40001"


def bkey(k):
    """Keys compare in byte order (COLLATE "C")."""
    return k.encode("utf-8")


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.ops = collections.Counter()
        self.violations = []
        self.errors = []

    def count(self, kind, n=1):
        with self.lock:
            self.ops[kind] += n

    def violation(self, who, msg):
        with self.lock:
            self.violations.append("%s: %s" % (who, msg))
            if len(self.violations) <= 20:
                print("VIOLATION %s: %s" % (who, msg), flush=True)

    def error(self, who, msg):
        with self.lock:
            self.errors.append("%s: %s" % (who, msg))
            if len(self.errors) <= 20:
                print("ERROR %s: %s" % (who, msg), flush=True)


STATS = Stats()
STOP = threading.Event()


def connect(name):
    conn = psycopg2.connect("", application_name=name)
    conn.autocommit = True
    with conn.cursor() as cur:
        # a hang is a failure, not something to wait for forever
        cur.execute("SET statement_timeout = '120s'")
    return conn


def sqlstate(exc):
    return getattr(exc, "pgcode", None)


def random_value(rng):
    r = rng.random()
    if r < 0.005:
        return "H" * rng.randint(90000, 110000)          # ~100 KB, out of line
    if r < 0.08:
        return "L%d:" % rng.randrange(10**6) + "x" * rng.randint(513, 3000)
    return "v%d" % rng.randrange(10**9)


class Worker(threading.Thread):
    def __init__(self, name, seed):
        super().__init__(name=name, daemon=True)
        self.rng = random.Random(seed)
        self.conn = None

    def run(self):
        try:
            self.conn = connect(self.name)
            self.cur = self.conn.cursor()
            while not STOP.is_set():
                self.step()
        except Exception as exc:  # noqa: BLE001 - every failure is reported
            STATS.error(self.name, "%s: %s" % (type(exc).__name__,
                                               traceback.format_exc()))
        finally:
            self.finish()
            if self.conn is not None:
                try:
                    self.conn.close()
                except Exception:  # noqa: BLE001
                    pass

    def finish(self):
        pass

    def q(self, sql, args=None):
        self.cur.execute(sql, args)
        return self.cur.fetchall() if self.cur.description else None

    def q1(self, sql, args=None):
        return self.q(sql, args)[0][0]

    def rollback_quietly(self):
        try:
            self.cur.execute("ROLLBACK")
        except psycopg2.Error:
            pass


# ---------------------------------------------------------------------------
# Transfer writers: accounts, increments, total invariant inside transactions
# ---------------------------------------------------------------------------

class TransferWriter(Worker):
    def view_total(self):
        row = self.q("SELECT coalesce(sum(value::bigint), 0), count(*) "
                     "FROM cmap_iterate('acct:')")[0]
        return int(row[0]), int(row[1])

    def check_total(self, where):
        total, n = self.view_total()
        STATS.count("in-transaction totals checked")
        if total != TOTAL or n != N_ACCOUNTS:
            STATS.violation(self.name, "%s: own view shows total %d over %d accounts, expected %d over %d"
                            % (where, total, n, TOTAL, N_ACCOUNTS))

    def pair(self, rr_snap, own):
        a, b = self.rng.sample(ACCOUNTS, 2)
        amt = self.rng.randint(1, 100)
        if self.rng.random() < 0.5:
            ra, rb = self.q("SELECT cmap_increment(%s, %s), cmap_increment(%s, %s)",
                            (a, -amt, b, amt))[0]
        else:
            ra = self.q1("SELECT cmap_increment(%s, %s)", (a, -amt))
            rb = self.q1("SELECT cmap_increment(%s, %s)", (b, amt))
        own[a] += -amt
        own[b] += amt
        if rr_snap is not None:
            # REPEATABLE READ: the view is the snapshot plus our own deltas
            for k, got in ((a, ra), (b, rb)):
                want = rr_snap[k] + own[k]
                if got != want:
                    STATS.violation(self.name, "cmap_increment(%r) returned %d, view says %d" % (k, got, want))
        STATS.count("increments", 2)

    def step(self):
        r = self.rng.random()
        if r < 0.15:
            a, b = self.rng.sample(ACCOUNTS, 2)
            amt = self.rng.randint(1, 100)
            self.q("SELECT cmap_increment(%s, %s), cmap_increment(%s, %s)", (a, -amt, b, amt))
            STATS.count("transfer: autocommit statement pairs")
            return
        if r < 0.30:
            a, b = self.rng.sample(ACCOUNTS, 2)
            amt = self.rng.randint(1, 100)
            # one simple-query message: an implicit transaction
            self.cur.execute("SELECT cmap_increment(%s, %s); SELECT cmap_increment(%s, %s)",
                             (a, -amt, b, amt))
            STATS.count("transfer: implicit-transaction pairs")
            return

        rr = self.rng.random() < 0.35
        own = collections.Counter()
        self.q("BEGIN ISOLATION LEVEL REPEATABLE READ" if rr else "BEGIN")
        try:
            rr_snap = None
            if rr:
                rows = self.q("SELECT key, value FROM cmap_iterate('acct:')")
                rr_snap = {k: int(v) for k, v in rows}
                if sum(rr_snap.values()) != TOTAL:
                    STATS.violation(self.name, "REPEATABLE READ snapshot total %d" % sum(rr_snap.values()))
            big = self.rng.random() < 0.05
            npairs = self.rng.randint(60, 90) if big else self.rng.randint(1, 5)
            for i in range(npairs):
                if self.rng.random() < 0.2:
                    self.q("SAVEPOINT s")
                    saved = own.copy()
                    for _ in range(self.rng.randint(1, 3)):
                        self.pair(rr_snap, own)
                    if self.rng.random() < 0.6:
                        self.q("ROLLBACK TO SAVEPOINT s")
                        own = saved
                        STATS.count("transfer: savepoints rolled back")
                    else:
                        self.q("RELEASE SAVEPOINT s")
                else:
                    self.pair(rr_snap, own)
                if not big and self.rng.random() < 0.3:
                    self.check_total("after a transfer")
            if rr:
                rows = self.q("SELECT key, value FROM cmap_iterate('acct:')")
                for k, v in rows:
                    if int(v) != rr_snap[k] + own[k]:
                        STATS.violation(self.name, "REPEATABLE READ view of %s is %s, want %d"
                                        % (k, v, rr_snap[k] + own[k]))
            if self.rng.random() < 0.1:
                self.q("ROLLBACK")
                STATS.count("transfer: transactions rolled back")
                return
        except psycopg2.Error:
            self.rollback_quietly()
            raise
        try:
            self.q("COMMIT")
            STATS.count("transfer: transactions committed")
            if len(own) > 64:
                STATS.count("transfer: large (>64 keys) transactions committed")
        except psycopg2.Error as exc:
            # increments are not conditional: they never conflict
            STATS.violation(self.name, "COMMIT of a transfer failed: %s %s" % (sqlstate(exc), exc))


# ---------------------------------------------------------------------------
# Random writers: own keys (exact model), shared counters and slots
# ---------------------------------------------------------------------------

class RandomWriter(Worker):
    def __init__(self, name, seed, index, shared):
        super().__init__(name, seed)
        self.index = index
        self.shared = shared
        self.prefix = "rnd:%d:" % index
        # ASCII and multi-byte keys, interleaved in byte order
        self.keys = []
        for k in range(KEYS_PER_WRITER):
            if k % 10 == 7:
                self.keys.append("%s\u00e9%03d" % (self.prefix, k))
            elif k % 10 == 8:
                self.keys.append("%s\u20ac%03d\U0001f600" % (self.prefix, k))
            else:
                self.keys.append("%s%03d" % (self.prefix, k))
        self.model = {}            # committed state of our keys
        self.counter_incs = collections.Counter()   # confirmed CAS increments
        self.held = {}             # slot -> tag we hold (confirmed)
        self.claims = collections.Counter()
        self.releases = collections.Counter()
        self.seq = 0

    def finish(self):
        with self.shared["lock"]:
            self.shared["models"][self.index] = dict(self.model)
            self.shared["counter_incs"].update(self.counter_incs)
            self.shared["held"][self.index] = dict(self.held)
            self.shared["claims"].update(self.claims)
            self.shared["releases"].update(self.releases)
            self.shared["finished"].add(self.index)

    # one write, checked against the view `view` (dict, updated)
    def write_op(self, view):
        k = self.rng.choice(self.keys)
        r = self.rng.random()
        if r < 0.45:
            v = random_value(self.rng)
            self.q("SELECT cmap_store(%s, %s)", (k, v))
            view[k] = v
            STATS.count("rnd: store")
        elif r < 0.70:
            got = self.q1("SELECT cmap_delete(%s)", (k,))
            want = k in view
            if got != want:
                STATS.violation(self.name, "cmap_delete(%r) returned %r, own view says %r" % (k, got, want))
            view.pop(k, None)
            STATS.count("rnd: delete")
        elif r < 0.92:
            v = random_value(self.rng)
            got = self.q1("SELECT cmap_swap(%s, %s)", (k, v))
            want = view.get(k)
            if got != want:
                STATS.violation(self.name, "cmap_swap(%r) returned %s, own view says %s"
                                % (k, short(got), short(want)))
            view[k] = v
            STATS.count("rnd: swap")
        else:
            got = self.q1("SELECT cmap_load(%s)", (k,))
            want = view.get(k)
            if got != want:
                STATS.violation(self.name, "cmap_load(%r) returned %s, own view says %s"
                                % (k, short(got), short(want)))
            STATS.count("rnd: load")

    def check_own_iterate(self, view):
        rows = self.q("SELECT key, value, version FROM cmap_iterate(%s)", (self.prefix,))
        STATS.count("rnd: own-key iterations checked")
        got = [(k, v) for k, v, _ in rows]
        want = sorted(view.items(), key=lambda kv: bkey(kv[0]))
        if got != want:
            gk = [k for k, _ in got]
            wk = [k for k, _ in want]
            STATS.violation(self.name, "own-key iteration differs from own view: %d rows vs %d; "
                            "missing %r extra %r" % (len(got), len(want),
                                                     sorted(set(wk) - set(gk))[:5],
                                                     sorted(set(gk) - set(wk))[:5]))

    def conditional_op(self, pend, in_block=True):
        """A CAS on a shared counter, or a slot claim/release."""
        pend["cond"] = True
        if self.rng.random() < 0.2 and in_block:
            # read with a conditional op, then a blind store of the next
            # value: the read is validated at commit, so no update is lost
            c = self.rng.choice(COUNTERS)
            v = self.q1("SELECT cmap_load_or_store(%s, '0')", (c,))
            self.q("SELECT cmap_store(%s, %s)", (c, str(int(v) + 1)))
            STATS.count("cond: counter load_or_store + store")
            pend["cnt"][c] += 1
        elif self.rng.random() < 0.6:
            c = self.rng.choice(COUNTERS)
            # load and CAS in one statement: in a transaction block both read
            # the statement's view, so the CAS must succeed.  In autocommit
            # the CAS decides on the latest version, which may be newer.
            row = self.q("SELECT v, cmap_compare_and_swap(%s, v, (v::bigint + 1)::text) "
                         "FROM (SELECT cmap_load(%s) AS v) s", (c, c))[0]
            STATS.count("cond: counter CAS")
            if row[1] is not True:
                if in_block:
                    STATS.violation(self.name, "CAS of %s from the value %r read in the same statement "
                                    "returned %r" % (c, row[0], row[1]))
                else:
                    STATS.count("cond: autocommit CAS lost a race (false)")
                return
            pend["cnt"][c] += 1
        else:
            s = self.rng.choice(SLOTS)
            if s in self.held and s not in pend["release"]:
                tag = self.held[s]
                ok = self.q1("SELECT cmap_compare_and_delete(%s, %s)", (s, tag))
                STATS.count("cond: slot release")
                if ok is not True:
                    STATS.violation(self.name, "release of %s held with tag %s returned %r" % (s, tag, ok))
                    return
                pend["release"].add(s)
            elif s not in self.held and s not in pend["claim"]:
                self.seq += 1
                tag = "w%d:%d" % (self.index, self.seq)
                got = self.q1("SELECT cmap_load_or_store(%s, %s)", (s, tag))
                STATS.count("cond: slot claim")
                if got == tag:
                    pend["claim"][s] = tag
                elif got is None or not got.startswith("w"):
                    STATS.violation(self.name, "load_or_store(%s) returned %r" % (s, got))

    def apply_pending(self, view, pend):
        self.model = view
        self.counter_incs.update(pend["cnt"])
        for s in pend["release"]:
            del self.held[s]
            self.releases[s] += 1
        for s, tag in pend["claim"].items():
            self.held[s] = tag
            self.claims[s] += 1

    def step(self):
        r = self.rng.random()
        if r < 0.15:
            # autocommit: one write is one transaction
            view = dict(self.model)
            self.write_op(view)
            self.model = view
            STATS.count("rnd: autocommit writes")
            return
        if r < 0.20:
            # autocommit conditional op: decided on the latest version under
            # the map's lock, so never 40001
            pend = new_pending()
            try:
                self.conditional_op(pend, in_block=False)
            except psycopg2.Error as exc:
                STATS.violation(self.name, "autocommit conditional op failed: %s %s" % (sqlstate(exc), exc))
                return
            self.apply_pending(dict(self.model), pend)
            STATS.count("cond: autocommit conditional ops")
            return

        rr = self.rng.random() < 0.3
        view = dict(self.model)
        pend = new_pending()
        self.q("BEGIN ISOLATION LEVEL REPEATABLE READ" if rr else "BEGIN")
        try:
            big = self.rng.random() < 0.04
            nops = self.rng.randint(70, 120) if big else self.rng.randint(1, 8)
            for i in range(nops):
                x = self.rng.random()
                if x < 0.12 and not big:
                    self.q("SAVEPOINT s")
                    saved = (dict(view), copy_pending(pend))
                    for _ in range(self.rng.randint(1, 4)):
                        self.write_op(view)
                    if self.rng.random() < 0.3:
                        self.conditional_op(pend)
                    if self.rng.random() < 0.6:
                        self.q("ROLLBACK TO SAVEPOINT s")
                        view, pend = saved
                        STATS.count("rnd: savepoints rolled back")
                    else:
                        self.q("RELEASE SAVEPOINT s")
                elif x < 0.20 and not big:
                    self.conditional_op(pend)
                elif x < 0.25 and not big:
                    self.check_own_iterate(view)
                else:
                    self.write_op(view)
            if self.rng.random() < 0.3:
                self.check_own_iterate(view)
            if self.rng.random() < 0.1:
                self.q("ROLLBACK")
                STATS.count("rnd: transactions rolled back")
                return
        except psycopg2.Error:
            self.rollback_quietly()
            raise
        try:
            self.q("COMMIT")
        except psycopg2.Error as exc:
            # 40001 is expected only when a conditional op on a shared key
            # survived (one in a rolled-back savepoint left no dependency)
            if sqlstate(exc) == SERIALIZATION_FAILURE and pend["cond"]:
                STATS.count("rnd: expected 40001 at commit")
                return
            STATS.violation(self.name, "COMMIT failed: %s %s (conditional ops on shared keys: %s)"
                            % (sqlstate(exc), str(exc).strip(), pend["cond"]))
            return
        self.apply_pending(view, pend)
        STATS.count("rnd: transactions committed")
        if big:
            STATS.count("rnd: large (>64 keys) transactions committed")


def new_pending():
    """What a transaction will have done to the shared keys if it commits."""
    return {"cnt": collections.Counter(), "claim": {}, "release": set(), "cond": False}


def copy_pending(p):
    return {"cnt": p["cnt"].copy(), "claim": dict(p["claim"]), "release": set(p["release"]),
            "cond": p["cond"]}


def short(v):
    if v is None:
        return "NULL"
    return repr(v if len(v) <= 40 else v[:30] + "...(%d bytes)" % len(v))


# ---------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------

class Reader(Worker):
    def __init__(self, name, seed):
        super().__init__(name, seed)
        self.last_version = -1
        self.last_counters = {}

    def see_version(self, v, where):
        if v < self.last_version:
            STATS.violation(self.name, "%s: cmap_version() went back from %d to %d"
                            % (where, self.last_version, v))
        self.last_version = max(self.last_version, v)

    def check_rows(self, rows, snap_version, where):
        """rows: (key, value, version) of one full iteration."""
        STATS.count("reader: iterations checked")
        prev = None
        total = 0
        naccts = 0
        for k, v, ver in rows:
            b = bkey(k)
            if prev is not None and not prev < b:
                STATS.violation(self.name, "%s: keys out of order or duplicated: %r then %r"
                                % (where, prev, b))
                return
            prev = b
            if ver is None or ver > snap_version:
                STATS.violation(self.name, "%s: entry %r has version %r in snapshot %d"
                                % (where, k, ver, snap_version))
            if k.startswith("acct:"):
                total += int(v)
                naccts += 1
        if total != TOTAL or naccts != N_ACCOUNTS:
            STATS.violation(self.name, "%s: accounts total %d over %d accounts in snapshot %d"
                            % (where, total, naccts, snap_version))
        # counters only move forward, and a session only moves forward
        for k, v, ver in rows:
            if k.startswith("cnt:"):
                n = int(v)
                if n < self.last_counters.get(k, 0):
                    STATS.violation(self.name, "%s: counter %s went back from %d to %d"
                                    % (where, k, self.last_counters[k], n))
                self.last_counters[k] = max(n, self.last_counters.get(k, 0))

    def full_iteration(self, where):
        rows = self.q("SELECT cmap_version(), key, value, version FROM cmap_iterate()")
        if not rows:
            STATS.violation(self.name, "%s: empty iteration" % where)
            return None, []
        versions = {r[0] for r in rows}
        if len(versions) != 1:
            STATS.violation(self.name, "%s: cmap_version() changed within one statement: %s"
                            % (where, sorted(versions)))
        v = rows[0][0]
        rows = [r[1:] for r in rows]
        self.check_rows(rows, v, where)
        return v, rows

    def account_statements(self, where):
        total, n = self.q("SELECT sum(value::bigint), count(*) FROM cmap_iterate('acct:')")[0]
        if total != TOTAL or n != N_ACCOUNTS:
            STATS.violation(self.name, "%s: iterate('acct:') total %s over %s" % (where, total, n))
        total = self.q1("SELECT sum(cmap_load(format('acct:%%s', lpad(i::text, 4, '0')))::bigint) "
                        "FROM generate_series(0, %s) i", (N_ACCOUNTS - 1,))
        if total != TOTAL:
            STATS.violation(self.name, "%s: 100 cmap_load() in one statement sum to %s" % (where, total))
        STATS.count("reader: account totals checked", 2)


class RCReader(Reader):
    def step(self):
        r = self.rng.random()
        if r < 0.4:
            v, _ = self.full_iteration("READ COMMITTED iteration")
            if v is not None:
                self.see_version(v, "READ COMMITTED iteration")
        elif r < 0.7:
            self.account_statements("READ COMMITTED")
        elif r < 0.9:
            # count and iteration in one statement share its version
            c, n, v = self.q("SELECT cmap_count(), (SELECT count(*) FROM cmap_iterate()), cmap_version()")[0]
            self.see_version(v, "count statement")
            STATS.count("reader: count = rows checked")
            if c != n:
                STATS.violation(self.name, "cmap_count() = %d but the same statement iterates %d rows" % (c, n))
        else:
            # LIMIT ends the scan early; the pin must still go away
            self.q("SELECT key FROM cmap_iterate() LIMIT %s", (self.rng.randint(1, 20),))
            STATS.count("reader: LIMIT scans")


class RRReader(Reader):
    def step(self):
        level = "SERIALIZABLE" if self.rng.random() < 0.25 else "REPEATABLE READ"
        where = level
        self.q("BEGIN ISOLATION LEVEL " + level)
        try:
            v0, c0 = self.q("SELECT cmap_version(), cmap_count()")[0]
            self.see_version(v0, where)
            v1, rows1 = self.full_iteration(where + " first iteration")
            time.sleep(self.rng.random() * 0.02)    # let writers commit
            self.account_statements(where)
            v2, rows2 = self.full_iteration(where + " second iteration")
            c2 = self.q1("SELECT cmap_count()")
            STATS.count("reader: repeatable-read transactions checked")
            if not (v0 == v1 == v2):
                STATS.violation(self.name, "%s: versions %s, %s, %s in one transaction" % (where, v0, v1, v2))
            if rows1 != rows2:
                STATS.violation(self.name, "%s: two iterations differ (%d vs %d rows)"
                                % (where, len(rows1), len(rows2)))
            if c0 != len(rows1) or c2 != len(rows1):
                STATS.violation(self.name, "%s: cmap_count() %d/%d but iteration has %d rows"
                                % (where, c0, c2, len(rows1)))
            self.q("COMMIT")
        except psycopg2.Error:
            self.rollback_quietly()
            raise


class CursorReader(Reader):
    """A streaming cursor keeps its version while writers commit."""

    def step(self):
        # now and then abandon the scan halfway: by an error in the
        # transaction, or by disconnecting (pins must not leak either way)
        abandon = self.rng.choice([None] * 8 + ["error", "disconnect"])
        self.q("BEGIN")
        try:
            self.q("DECLARE c NO SCROLL CURSOR FOR "
                   "SELECT cmap_version(), (r).key, (r).value, (r).version "
                   "FROM (SELECT cmap_iterate() AS r OFFSET 0) s")
            rows = []
            while True:
                part = self.q("FETCH 40 FROM c")
                if not part:
                    break
                rows.extend(part)
                if abandon and len(rows) >= 200:
                    break
                # another statement meanwhile gets a newer (or the same) version
                if self.rng.random() < 0.3:
                    v = self.q1("SELECT cmap_version()")
                    if rows and v < rows[0][0]:
                        STATS.violation(self.name, "statement version %d older than the open cursor's %d"
                                        % (v, rows[0][0]))
                time.sleep(0.001)
            if abandon == "error":
                try:
                    self.q("SELECT 1 / 0")
                except psycopg2.errors.DivisionByZero:
                    pass
                self.q("ROLLBACK")
                STATS.count("reader: cursor scans abandoned by an error")
                return
            if abandon == "disconnect":
                self.conn.close()
                self.conn = connect(self.name)
                self.cur = self.conn.cursor()
                STATS.count("reader: cursor scans abandoned by disconnecting")
                return
            self.q("CLOSE c")
            self.q("COMMIT")
        except psycopg2.Error:
            self.rollback_quietly()
            raise
        STATS.count("reader: cursor scans checked")
        if not rows:
            STATS.violation(self.name, "empty cursor scan")
            return
        versions = {r[0] for r in rows}
        if len(versions) != 1:
            STATS.violation(self.name, "cursor rows carry several cmap_version() values: %s" % sorted(versions))
        self.check_rows([r[1:] for r in rows], rows[0][0], "cursor")
        self.see_version(rows[0][0], "cursor")


# ---------------------------------------------------------------------------
# Setup and final checks
# ---------------------------------------------------------------------------

def setup(conn):
    cur = conn.cursor()
    cur.execute("SELECT cmap_count()")
    if cur.fetchone()[0] != 0:
        cur.execute("SELECT cmap_clear()")
    cur.execute("BEGIN")
    for a in ACCOUNTS:
        cur.execute("SELECT cmap_store(%s, %s)", (a, str(START_BALANCE)))
    for c in COUNTERS:
        cur.execute("SELECT cmap_store(%s, '0')", (c,))
    cur.execute("COMMIT")


def final_checks(conn, shared):
    cur = conn.cursor()
    fails = []

    # every test session has gone (their backends may still be exiting)
    deadline = time.time() + 30
    while True:
        cur.execute("SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        if cur.fetchone()[0] == 0:
            break
        if time.time() > deadline:
            fails.append("test sessions still connected 30 s after closing")
            break
        time.sleep(0.05)

    cur.execute("SELECT pinned_snapshots, oldest_pinned_version FROM cmap_stats()")
    pinned, oldest = cur.fetchone()
    if pinned != 0:
        fails.append("cmap_stats() shows %d pinned snapshots (oldest %s) after all sessions closed"
                     % (pinned, oldest))

    cur.execute("SELECT key, value, version FROM cmap_iterate()")
    rows = cur.fetchall()
    got = {k: v for k, v, _ in rows}
    if len(got) != len(rows):
        fails.append("final iteration has duplicate keys")
    bks = [bkey(k) for k, _, _ in rows]
    if bks != sorted(set(bks)):
        fails.append("final iteration is not in strictly increasing byte order")
    cur.execute("SELECT cmap_count(), cmap_version()")
    count, version = cur.fetchone()
    cur.execute("SELECT version, entries FROM cmap_stats()")
    sv, se = cur.fetchone()
    if count != len(rows) or se != len(rows) or sv != version:
        fails.append("cmap_count() %d, stats entries %d, stats version %d vs %d rows, version %d"
                     % (count, se, sv, len(rows), version))

    # accounts
    total = sum(int(got.get(a, 0)) for a in ACCOUNTS)
    if total != TOTAL or not all(a in got for a in ACCOUNTS):
        fails.append("final accounts total %d (expected %d)" % (total, TOTAL))

    # random writers' keys: the union of their models, exactly
    want = {}
    for m in shared["models"].values():
        want.update(m)
    got_rnd = {k: v for k, v in got.items() if k.startswith("rnd:")}
    if got_rnd != want:
        missing = sorted(set(want) - set(got_rnd))
        extra = sorted(set(got_rnd) - set(want))
        wrong = sorted(k for k in set(want) & set(got_rnd) if want[k] != got_rnd[k])
        fails.append("rnd:* keys differ from the writers' models: %d missing %r, %d extra %r, "
                     "%d with a wrong value %r" % (len(missing), missing[:5], len(extra), extra[:5],
                                                   len(wrong), wrong[:5]))

    # counters: exactly the confirmed CAS increments
    for c in COUNTERS:
        if got.get(c) != str(shared["counter_incs"][c]):
            fails.append("counter %s is %r but %d increments were confirmed (a lost or phantom update)"
                         % (c, got.get(c), shared["counter_incs"][c]))

    # slots: at most one confirmed holder, whose tag is the value
    for s in SLOTS:
        holders = [(w, h[s]) for w, h in shared["held"].items() if s in h]
        net = shared["claims"][s] - shared["releases"][s]
        if len(holders) > 1 or net != len(holders):
            fails.append("slot %s: confirmed holders %r, %d claims, %d releases"
                         % (s, holders, shared["claims"][s], shared["releases"][s]))
        elif holders and got.get(s) != holders[0][1]:
            fails.append("slot %s holds %r but the confirmed holder has tag %r" % (s, got.get(s), holders[0][1]))
        elif not holders and s in got:
            fails.append("slot %s holds %r but nobody holds it" % (s, got[s]))

    known = set(ACCOUNTS) | set(COUNTERS) | set(SLOTS)
    others = [k for k in got if k not in known and not k.startswith("rnd:")]
    if others:
        fails.append("unexpected keys in the map: %r" % others[:5])

    # memory of old versions comes back once nothing pins them
    deadline = time.time() + 60
    while True:
        cur.execute("SELECT retained_bytes, pinned_snapshots FROM cmap_stats()")
        retained, pinned = cur.fetchone()
        if retained == 0:
            break
        if time.time() > deadline:
            fails.append("retained_bytes still %d after 60 s (pinned_snapshots %d)" % (retained, pinned))
            break
        time.sleep(0.1)

    cur.execute("SELECT version, entries, memory_used, memory_limit, committed_versions, "
                "reclaimed_bytes, reclaim_runs, map_bytes, tree_height FROM cmap_stats()")
    names = [d[0] for d in cur.description]
    print("final cmap_stats(): " + ", ".join("%s=%s" % kv for kv in zip(names, cur.fetchone())))
    return fails


def main():
    print("stress: %d s, seed %d, %d transfer writers, %d random writers, %d+%d+%d readers "
          "(READ COMMITTED, REPEATABLE READ/SERIALIZABLE, cursor)"
          % (DURATION, SEED, N_TRANSFER, N_RANDOM, N_RC_READERS, N_RR_READERS, N_CURSOR_READERS),
          flush=True)
    master = random.Random(SEED)
    admin = connect("stress-admin")
    setup(admin)
    admin.close()

    shared = {"lock": threading.Lock(), "models": {}, "counter_incs": collections.Counter(),
              "held": {}, "claims": collections.Counter(), "releases": collections.Counter(),
              "finished": set()}
    workers = []
    for i in range(N_TRANSFER):
        workers.append(TransferWriter("transfer-%d" % i, master.randrange(2**32)))
    for i in range(N_RANDOM):
        workers.append(RandomWriter("random-%d" % i, master.randrange(2**32), i, shared))
    for i in range(N_RC_READERS):
        workers.append(RCReader("reader-rc-%d" % i, master.randrange(2**32)))
    for i in range(N_RR_READERS):
        workers.append(RRReader("reader-rr-%d" % i, master.randrange(2**32)))
    for i in range(N_CURSOR_READERS):
        workers.append(CursorReader("reader-cursor-%d" % i, master.randrange(2**32)))

    t0 = time.time()
    for w in workers:
        w.start()
    while time.time() - t0 < DURATION and not STOP.is_set():
        time.sleep(0.2)
        if STATS.errors:
            break
    STOP.set()
    for w in workers:
        w.join(150)
    hung = [w.name for w in workers if w.is_alive()]
    if hung:
        STATS.error("main", "sessions did not finish: %s" % hung)
    elapsed = time.time() - t0

    fails = []
    if not hung:
        if len(shared["finished"]) != N_RANDOM:
            STATS.error("main", "not every random writer reported its model")
        check = connect("stress-check")
        fails = final_checks(check, shared)
        check.close()
        STATS.count("final checks", 1)
    for f in fails:
        STATS.violation("final", f)

    print("\nstress summary after %.1f s:" % elapsed)
    for kind in sorted(STATS.ops):
        print("  %-50s %10d" % (kind, STATS.ops[kind]))
    print("  %-50s %10d" % ("violations", len(STATS.violations)))
    print("  %-50s %10d" % ("unexpected errors", len(STATS.errors)))
    for v in STATS.violations[:50]:
        print("VIOLATION " + v)
    for e in STATS.errors[:20]:
        print("ERROR " + e)
    sys.exit(1 if STATS.violations or STATS.errors else 0)


if __name__ == "__main__":
    main()
