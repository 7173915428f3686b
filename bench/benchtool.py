#!/usr/bin/python3
"""
bench/benchtool.py: parsing and reporting helper for bench/run.sh.

Standard library only.  Subcommands:

  tps FILE                 print the tps figure of one pgbench output file
  lat PREFIX               print "p50 p99 p999 n" (milliseconds) from every
                           pgbench per-transaction log PREFIX.* (-l --log-prefix)
  timing FILE              parse a psql session that printed "@@name" markers
                           (\\echo) before timed queries (\\timing on); prints
                           "name best_ms n result" for each name
  series TSV               summarise the cmap_stats() samples of the pinned
                           reader test as facts (name<TAB>value lines)
  report FACTS OUTDIR      turn the facts file written by run.sh (name<TAB>value
                           lines) into OUTDIR/results.json, a printed table and
                           the gnuplot inputs for OUTDIR/ratios.png

Latency percentiles use the nearest-rank method over all transactions of the
run (all clients, all threads).
"""
import glob
import json
import math
import os
import re
import sys


def die(msg):
    sys.stderr.write("benchtool: %s\n" % msg)
    sys.exit(1)


# ---------------------------------------------------------------------------
# pgbench output and logs
# ---------------------------------------------------------------------------

def parse_tps(path):
    with open(path) as f:
        text = f.read()
    m = re.search(r"^tps = ([0-9.]+) \(without initial connection time\)", text, re.M)
    if not m:
        m = re.search(r"^tps = ([0-9.]+)", text, re.M)
    if not m:
        die("no tps line in %s" % path)
    fail = re.search(r"^number of failed transactions: (\d+)", text, re.M)
    if fail and int(fail.group(1)) > 0:
        die("%s: %s failed transactions" % (path, fail.group(1)))
    return float(m.group(1))


def percentile(sorted_vals, p):
    """Nearest-rank percentile (p in 0..100) of a sorted list."""
    if not sorted_vals:
        return float("nan")
    rank = max(1, int(math.ceil(p / 100.0 * len(sorted_vals))))
    return sorted_vals[rank - 1]


def latencies_us(prefix):
    files = sorted(glob.glob(glob.escape(prefix) + ".*"))
    if not files:
        die("no pgbench log files %s.*" % prefix)
    vals = []
    for path in files:
        with open(path) as f:
            for line in f:
                parts = line.split()
                # client_id transaction_no time script_no time_epoch time_us ...
                if len(parts) >= 6 and parts[2].isdigit():
                    vals.append(int(parts[2]))
    if not vals:
        die("empty pgbench logs %s.*" % prefix)
    vals.sort()
    return vals


def cmd_lat(prefix):
    v = latencies_us(prefix)
    print("%.3f %.3f %.3f %d" % (percentile(v, 50) / 1000.0,
                                 percentile(v, 99) / 1000.0,
                                 percentile(v, 99.9) / 1000.0, len(v)))


# ---------------------------------------------------------------------------
# psql \timing sessions
# ---------------------------------------------------------------------------

def parse_timing(path):
    """
    Return {name: {"times": [ms...], "result": last result line}}.  Each
    "@@name" line starts a section; statements in a section named "-..." are
    set-up, not measurements.
    """
    out = {}
    cur = None
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("@@"):
                cur = line[2:].strip()
                out.setdefault(cur, {"times": [], "result": None})
                continue
            m = re.match(r"^Time: ([0-9.]+) ms", line)
            if m:
                if cur is not None:
                    out[cur]["times"].append(float(m.group(1)))
                continue
            if cur is not None and line.strip():
                out[cur]["result"] = line.strip()
    return out


def cmd_timing(path):
    for name, d in parse_timing(path).items():
        if name.startswith("-"):
            continue
        if not d["times"]:
            die("%s: no timing for %s" % (path, name))
        print("%s %.3f %d %s" % (name, min(d["times"]), len(d["times"]),
                                 (d["result"] or "-").replace(" ", "_")))


# ---------------------------------------------------------------------------
# cmap_stats() samples of the pinned-reader test
# ---------------------------------------------------------------------------

def read_series(path):
    rows = []
    with open(path) as f:
        cols = None
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if cols is None:
                cols = parts
                continue
            if len(parts) != len(cols):
                continue
            row = {}
            for c, v in zip(cols, parts):
                if re.match(r"^-?[0-9]+$", v):
                    row[c] = int(v)
                elif re.match(r"^-?[0-9]*\.[0-9]+$", v):
                    row[c] = float(v)
                else:
                    row[c] = v
            rows.append(row)
    return rows


def cmd_series(path):
    rows = read_series(path)
    for run, suffix in (("pinned", ""), ("unpinned", "_unpinned")):
        r = [x for x in rows if x["run"] == run]
        if not r:
            continue
        first, last = r[0], r[-1]
        facts = {
            "retained_bytes_max": max(x["retained_bytes"] for x in r),
            "memory_used_start": first["memory_used"],
            "memory_used_max": max(x["memory_used"] for x in r),
            "memory_used_growth": max(x["memory_used"] for x in r) - first["memory_used"],
            "retained_bytes_after": last["retained_bytes"],
            "reclaim_runs": last["reclaim_runs"] - first["reclaim_runs"],
            "reclaimed_bytes": last["reclaimed_bytes"] - first["reclaimed_bytes"],
            "versions_published": last["version"] - first["version"],
            "samples": len(r),
        }
        rel = [x for x in r if x["phase"] == "released"]
        if rel:
            zero = [x for x in rel if x["retained_bytes"] == 0]
            if zero:
                facts["release_to_zero_s"] = round(zero[0]["t"] - rel[0]["t"], 2)
        for k, v in facts.items():
            print("pin.%s%s\t%s" % (k, suffix, v))


# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------

def read_facts(path):
    facts = {}
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or "\t" not in line:
                continue
            k, v = line.split("\t", 1)
            if re.match(r"^-?[0-9]+$", v):
                facts[k] = int(v)
            elif re.match(r"^-?[0-9]*\.[0-9]+(e-?[0-9]+)?$", v):
                facts[k] = float(v)
            else:
                facts[k] = v
    return facts


def fmt_num(x):
    if x is None or x == "":
        return "-"
    if isinstance(x, str):
        return x
    if isinstance(x, int):
        return "{:,}".format(x)
    if abs(x) >= 100:
        return "{:,.0f}".format(x)
    if abs(x) >= 10:
        return "%.1f" % x
    return "%.3f" % x


def human_size(n):
    n = int(n)
    for unit, div in (("M", 1000000), ("K", 1000)):
        if n >= div and n % div == 0:
            return "%d%s" % (n // div, unit)
    return str(n)


class Report:
    def __init__(self, facts):
        self.f = facts
        self.ratios = []

    def get(self, key):
        v = self.f.get(key)
        return float(v) if isinstance(v, (int, float)) else None

    def ratio(self, name, desc, cmap_label, cmap_key, base_label, base_key,
              unit, op=None, target=None, invert=False, headline=False,
              overhead=False):
        """
        ratio = cmap / baseline for throughputs (higher is better), or
        baseline / cmap when invert (times: speed-up).  For "<=" targets the
        ratio is cmap / baseline as well (bytes).
        """
        c, b = self.get(cmap_key), self.get(base_key)
        if c is None or b is None or c == 0 or b == 0:
            r = None
        else:
            r = (b / c) if invert else (c / b)
        met = None
        if target is not None and r is not None:
            met = (r >= target) if op == ">=" else (r <= target)
        entry = {
            "name": name,
            "description": desc,
            "cmap": {"label": cmap_label, "value": c, "unit": unit},
            "baseline": {"label": base_label, "value": b, "unit": unit},
            "definition": ("baseline / cmap" if invert else "cmap / baseline"),
            "ratio": None if r is None else round(r, 4),
            "target": None if target is None else {"op": op, "value": target},
            "met": met,
            "headline": headline,
        }
        if overhead and r is not None:
            entry["overhead"] = round(1.0 - r, 4)
        self.ratios.append(entry)
        return entry


def cmd_report(facts_path, outdir):
    f = read_facts(facts_path)
    rep = Report(f)
    quick = f.get("meta.quick") == "yes"
    n = int(f.get("meta.keys", 0))
    nlabel = human_size(n)

    # 1, 2: point operations
    rep.ratio("load_vs_select1", "cmap_load point read TPS vs SELECT 1 (protocol floor)",
              "cmap_load TPS", "tps.load", "SELECT 1 TPS", "tps.select1", "tps",
              ">=", 0.90, headline=True)
    rep.ratio("load_vs_pk_lookup", "cmap_load point read TPS vs unlogged table PK lookup",
              "cmap_load TPS", "tps.load", "unlogged PK lookup TPS", "tps.pk_lookup", "tps",
              ">=", 1.2, headline=True)
    rep.ratio("store_vs_select1", "cmap_store autocommit TPS vs SELECT 1",
              "cmap_store TPS", "tps.store", "SELECT 1 TPS", "tps.select1", "tps",
              ">=", 0.85, headline=True)
    rep.ratio("store_vs_upsert_async",
              "cmap_store TPS vs unlogged upsert with synchronous_commit = off (headline baseline)",
              "cmap_store TPS", "tps.store", "upsert TPS (sync_commit off)",
              "tps.upsert_async", "tps", ">=", 1.5, headline=True)
    rep.ratio("store_vs_upsert_sync",
              "cmap_store TPS vs unlogged upsert with synchronous_commit = on (the default)",
              "cmap_store TPS", "tps.store", "upsert TPS (sync_commit on)",
              "tps.upsert_sync", "tps", ">=", 1.5)
    # 3: bulk load
    rep.ratio("bulk_load_speedup",
              "bulk load of %s keys in one transaction: INSERT time / cmap_store time" % nlabel,
              "cmap bulk load ms", "bulk.cmap_ms", "INSERT into unlogged table ms",
              "bulk.insert_ms", "ms", ">=", 3.0, invert=True, headline=True)
    # 4: iteration
    rep.ratio("iterate_vs_seqscan",
              "full iteration throughput: cmap_iterate() aggregate vs unlogged seq scan aggregate",
              "cmap_iterate ms", "iter.cmap_ms", "seq scan ms", "iter.seqscan_ms", "ms",
              ">=", 0.6, invert=True, headline=True)
    rep.ratio("sql_srf_vs_seqscan",
              "reference: SQL-function SRF over the table vs the seq scan (design.md: 0.44)",
              "kv_srf() ms", "iter.srf_ms", "seq scan ms", "iter.seqscan_ms", "ms",
              invert=True)
    rep.ratio("iterate_vs_generate_series",
              "reference: cmap_iterate() vs generate_series() of as many rows (SRF floor)",
              "cmap_iterate ms", "iter.cmap_ms", "generate_series ms", "iter.genseries_ms",
              "ms", invert=True)
    rep.ratio("prefix_scan_vs_index_range",
              "prefix scan: cmap_iterate('k12') vs index range scan k LIKE 'k12%'",
              "cmap_iterate('k12') ms", "prefix.cmap_ms", "index range scan ms",
              "prefix.table_ms", "ms", invert=True)
    # 5: memory
    rep.ratio("memory_per_entry",
              "map_bytes per entry vs unlogged table+PK bytes per row (11-byte keys, 32-byte values)",
              "map_bytes/entry", "mem.map_per_entry", "table+index bytes/row",
              "mem.table_per_row", "bytes", "<=", 0.6, headline=True)
    rep.ratio("memory_used_per_entry",
              "reference: memory_used per entry (whole shared area, including the "
              "allocator's free-node stock) vs table+PK bytes per row",
              "memory_used/entry", "mem.used_per_entry", "table+index bytes/row",
              "mem.table_per_row", "bytes")
    # 6: write cost vs size
    sizes = sorted(int(k.split(".")[1]) for k, v in f.items()
                   if k.startswith("size.") and k.endswith(".tps") and isinstance(v, (int, float)))
    # TPS@1M / TPS@1K (--quick: TPS@100K / TPS@1K); null when a size failed
    big = 100000 if quick else 1000000
    rep.ratio("write_tps_%s_vs_1K" % human_size(big),
              "cmap_store TPS with the map at %s keys vs at 1K keys" % human_size(big),
              "TPS@%s" % human_size(big), "size.%d.tps" % big, "TPS@1K", "size.1000.tps",
              "tps", ">=", 0.8, headline=True)
    # 8: readers under a writer
    rep.ratio("reader_with_writer_vs_alone",
              "cmap_load TPS of 1 reader while 1 writer runs cmap_store vs the reader alone",
              "reader TPS with writer", "rw.reader_with_writer", "reader TPS alone",
              "rw.reader_alone", "tps")
    rep.ratio("writer_p99_pinned_vs_unpinned",
              "writer p99 latency with a long-pinned cursor over cmap_iterate() vs without",
              "p99 ms with pinned reader", "pin.p99_pinned", "p99 ms without",
              "pin.p99_unpinned", "ms")
    # 9: mirror
    if f.get("mirror.status") == "ok":
        rep.ratio("mirror_trigger_tps",
                  "upsert TPS into a regular table with the cmap_mirror trigger vs without "
                  "(synchronous_commit = off); overhead = 1 - ratio",
                  "upsert TPS with trigger", "mirror.with_async", "upsert TPS without",
                  "mirror.without_async", "tps", ">=", 0.85, headline=True, overhead=True)
        rep.ratio("mirror_trigger_tps_sync",
                  "as above with synchronous_commit = on",
                  "upsert TPS with trigger", "mirror.with_sync", "upsert TPS without",
                  "mirror.without_sync", "tps", ">=", 0.85, overhead=True)

    # absolute figures
    lat = {}
    for op in ("select1", "load", "pk_lookup", "store", "upsert_sync", "upsert_async",
               "rw_writer_unpinned", "rw_writer_pinned"):
        if ("lat.%s.p50" % op) in f:
            lat[op] = {p: f.get("lat.%s.%s" % (op, p)) for p in ("p50", "p99", "p999", "n")}
    absolute = {
        "tps": {k[4:]: v for k, v in f.items() if k.startswith("tps.")},
        "latency_ms": lat,
        "bulk_load_ms": {k[5:]: v for k, v in f.items() if k.startswith("bulk.")},
        "iteration_ms": {k[5:]: v for k, v in f.items() if k.startswith("iter.")},
        "prefix_scan": {k[7:]: v for k, v in f.items() if k.startswith("prefix.")},
        "memory": {k[4:]: v for k, v in f.items() if k.startswith("mem.")},
        "write_tps_vs_map_size": [{"keys": s, "tps": f.get("size.%d.tps" % s),
                                   "p99_ms": f.get("size.%d.p99" % s)} for s in sizes],
        "readers_under_writer": {k[3:]: v for k, v in f.items() if k.startswith("rw.")},
        "pinned_reader": {k[4:]: v for k, v in f.items() if k.startswith("pin.")},
        "mirror": {k[7:]: v for k, v in f.items() if k.startswith("mirror.")},
    }
    series_path = os.path.join(outdir, "pinned_series.tsv")
    series = read_series(series_path) if os.path.exists(series_path) else []
    absolute["pinned_reader"]["series"] = series

    result = {
        "meta": {k[5:]: v for k, v in f.items() if k.startswith("meta.")},
        "ratios": rep.ratios,
        "absolute": absolute,
        "warnings": [v for k, v in sorted(f.items()) if k.startswith("warn.")],
    }
    with open(os.path.join(outdir, "results.json"), "w") as out:
        json.dump(result, out, indent=2, sort_keys=False)
        out.write("\n")

    print_table(f, rep.ratios, lat, sizes, absolute, quick)
    write_plot_inputs(outdir, rep.ratios, sizes, f)


def print_table(f, ratios, lat, sizes, absolute, quick):
    n = int(f.get("meta.keys", 0))
    w = print
    w("")
    w("cmapext benchmark  (%s mode, %s keys, %s clients, %ss per pgbench run, PostgreSQL %s)"
      % ("quick" if quick else "full", "{:,}".format(n), int(f.get("meta.clients", 2)),
         int(f.get("meta.seconds", 0)), f.get("meta.pg_version", "?")))
    w("")
    w("Point operations (pgbench -M prepared)           TPS      p50 ms   p99 ms  p99.9 ms")
    names = [("select1", "SELECT 1"), ("load", "cmap_load"), ("pk_lookup", "unlogged PK lookup"),
             ("store", "cmap_store"), ("upsert_sync", "unlogged upsert, sync_commit on"),
             ("upsert_async", "unlogged upsert, sync_commit off")]
    for key, label in names:
        t = f.get("tps." + key)
        l = lat.get(key, {})
        w("  %-40s %12s %9s %8s %9s" % (label, fmt_num(t), fmt_num(l.get("p50")),
                                         fmt_num(l.get("p99")), fmt_num(l.get("p999"))))
    w("")
    w("Bulk load, one transaction (best, ms)")
    w("  %-40s %12s" % ("cmap_store over generate_series", fmt_num(f.get("bulk.cmap_ms"))))
    w("  %-40s %12s" % ("INSERT into empty unlogged table", fmt_num(f.get("bulk.insert_ms"))))
    w("")
    w("Full iteration, count + sum(length) (best, ms)")
    for key, label in (("iter.cmap_ms", "cmap_iterate()"), ("iter.seqscan_ms", "unlogged seq scan"),
                       ("iter.srf_ms", "SQL SRF over the table"),
                       ("iter.genseries_ms", "generate_series (SRF floor)"),
                       ("prefix.cmap_ms", "prefix: cmap_iterate('k12')"),
                       ("prefix.table_ms", "prefix: kv WHERE k LIKE 'k12%'")):
        w("  %-40s %12s" % (label, fmt_num(f.get(key))))
    w("")
    w("Memory per entry (11-byte key, 32-byte value, %s entries)" % fmt_num(f.get("mem.entries")))
    w("  %-40s %12s" % ("cmap map_bytes / entry", fmt_num(f.get("mem.map_per_entry"))))
    w("  %-40s %12s" % ("cmap memory_used / entry", fmt_num(f.get("mem.used_per_entry"))))
    w("  %-40s %12s" % ("cmap (memory_used - free_pool) / entry",
                        fmt_num(f.get("mem.used_without_pool_per_entry"))))
    w("  %-40s %12s" % ("unlogged table + PK / row", fmt_num(f.get("mem.table_per_row"))))
    w("")
    w("cmap_store TPS vs map size")
    for s in sizes:
        w("  %-40s %12s   p99 %s ms" % ("%s keys" % human_size(s), fmt_num(f.get("size.%d.tps" % s)),
                                        fmt_num(f.get("size.%d.p99" % s))))
    w("")
    w("Readers under a writer (1 reader, 1 writer); writers (%d clients) and a pinned reader"
      % int(f.get("meta.clients", 2)))
    for key, label in (("rw.reader_alone", "reader TPS alone"),
                       ("rw.reader_with_writer", "reader TPS with writer"),
                       ("rw.writer_with_reader", "writer TPS with reader"),
                       ("pin.writer_tps_unpinned", "writer TPS, no pinned reader"),
                       ("pin.writer_tps_pinned", "writer TPS, pinned cursor open"),
                       ("pin.p99_unpinned", "writer p99 ms, no pinned reader"),
                       ("pin.p99_pinned", "writer p99 ms, pinned cursor open"),
                       ("pin.retained_bytes_max", "retained_bytes max while pinned"),
                       ("pin.memory_used_growth", "memory_used growth while pinned"),
                       ("pin.retained_bytes_after", "retained_bytes after release"),
                       ("pin.reclaim_runs", "reclaim runs during the test"),
                       ("pin.reclaimed_bytes", "bytes reclaimed during the test")):
        w("  %-40s %12s" % (label, fmt_num(f.get(key))))
    w("")
    if f.get("mirror.status") == "ok":
        w("cmap_mirror trigger (regular table upsert TPS)")
        for key, label in (("mirror.without_async", "without trigger, sync off"),
                           ("mirror.with_async", "with trigger, sync off"),
                           ("mirror.without_sync", "without trigger, sync on"),
                           ("mirror.with_sync", "with trigger, sync on")):
            w("  %-40s %12s" % (label, fmt_num(f.get(key))))
    else:
        w("cmap_mirror trigger: %s" % f.get("mirror.status", "not run"))
    w("")
    w("Ratios                                   cmap / baseline   ratio   target   met")
    for r in ratios:
        t = r["target"]
        tgt = "%s %.2f" % (t["op"], t["value"]) if t else "-"
        met = "-" if r["met"] is None else ("yes" if r["met"] else "NO")
        w("  %s%-34s %10s / %-10s %6s %8s %5s" % (
            "*" if r["headline"] else " ", r["name"], fmt_num(r["cmap"]["value"]),
            fmt_num(r["baseline"]["value"]),
            "-" if r["ratio"] is None else "%.2f" % r["ratio"], tgt, met))
    w("  (* headline ratios; times are inverted so that every ratio > 1 favours cmap,")
    w("   except memory, where lower is better)")
    for k, v in sorted(f.items()):
        if k.startswith("warn."):
            w("WARNING: %s" % v)
    w("")


def write_plot_inputs(outdir, ratios, sizes, f):
    ymax = 1.0
    with open(os.path.join(outdir, "ratios.dat"), "w") as d:
        d.write("# idx name ratio target met\n")
        i = 0
        for r in ratios:
            if r["target"] is None or r["ratio"] is None:
                continue
            d.write('%d "%s" %.4f %.4f %d\n' % (i, r["name"], r["ratio"],
                                               r["target"]["value"], 1 if r["met"] else 0))
            ymax = max(ymax, r["ratio"], r["target"]["value"])
            i += 1
    with open(os.path.join(outdir, "size.dat"), "w") as d:
        d.write("# keys tps\n")
        for s in sizes:
            d.write("%d %.3f\n" % (s, f.get("size.%d.tps" % s)))
    tps1k = f.get("size.1000.tps")
    target_line = ""
    if tps1k:
        target_line = (", %.3f with lines dt 2 lw 2 lc rgb 'black' title 'target: 0.8 x TPS at 1K keys'"
                       % (0.8 * tps1k))
    nbars = sum(1 for r in ratios if r["target"] is not None and r["ratio"] is not None)
    xmin = min(sizes) / 2.0 if sizes else 100
    xmax = max(sizes) * 2.0 if sizes else 1e7
    if nbars:
        ratio_plot = ("plot '%s/ratios.dat' using 1:3:($5 > 0 ? 0x33aa33 : 0xcc3333):xtic(2) "
                      "with boxes lc rgb variable, \\\n"
                      "     '' using ($1-0.3):4:(0.6):(0) with vectors nohead lw 3 lc rgb 'black', \\\n"
                      "     '' using 1:3:(sprintf('%%.2f', $3)) with labels offset 0,0.7 font ',8'"
                      % outdir)
    else:
        ratio_plot = ("set label 1 'no ratio could be computed' at graph 0.5, graph 0.5 center\n"
                      "set yrange [0:1]\nplot [0:1] 2 notitle\nunset label 1")
    if sizes:
        size_plot = ("plot '%s/size.dat' using 1:2 with linespoints lw 2 pt 7 lc rgb '#3366cc' "
                     "title 'cmap_store TPS'%s" % (outdir, target_line))
    else:
        size_plot = ("set label 2 'no data' at graph 0.5, graph 0.5 center\n"
                     "set yrange [0:1]\nplot [100:1e7] 2 notitle")
    gp = """set terminal pngcairo size 1400,640 font ",10" noenhanced
set output '{out}/ratios.png'
set multiplot layout 1,2 title "cmapext benchmark ({mode} mode, {keys} keys, 2 clients)"
set title "ratios vs targets (green: met, red: missed; black bar: target)"
set style fill solid 0.7 border -1
set boxwidth 0.6
set xtics rotate by -35 left font ",8" nomirror
set ylabel "ratio (cmap / baseline; memory: lower is better)"
set yrange [0:{ymax}]
set grid ytics
set key off
set bmargin 11
{ratio_plot}
unset xtics
set xtics nomirror
set bmargin
set title "cmap_store autocommit TPS vs map size (2 clients)"
set logscale x 10
set xrange [{xmin}:{xmax}]
set xlabel "keys in the map (log scale)"
set ylabel "TPS"
set yrange [0:*]
set key bottom right
{size_plot}
unset multiplot
""".format(out=outdir, mode="quick" if f.get("meta.quick") == "yes" else "full",
           keys="{:,}".format(int(f.get("meta.keys", 0))), ymax="%.2f" % (ymax * 1.15),
           xmin=xmin, xmax=xmax, ratio_plot=ratio_plot, size_plot=size_plot)
    with open(os.path.join(outdir, "ratios.gp"), "w") as d:
        d.write(gp)


def main(argv):
    if len(argv) < 2:
        die(__doc__)
    cmd = argv[1]
    if cmd == "tps" and len(argv) == 3:
        print("%.3f" % parse_tps(argv[2]))
    elif cmd == "lat" and len(argv) == 3:
        cmd_lat(argv[2])
    elif cmd == "timing" and len(argv) == 3:
        cmd_timing(argv[2])
    elif cmd == "series" and len(argv) == 3:
        cmd_series(argv[2])
    elif cmd == "report" and len(argv) == 4:
        cmd_report(argv[2], argv[3])
    else:
        die("bad arguments: %s" % " ".join(argv[1:]))


if __name__ == "__main__":
    main(sys.argv)
