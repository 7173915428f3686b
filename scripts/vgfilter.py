#!/usr/bin/env python3
"""Print valgrind memcheck errors whose top frames, or the origin of the
offending value, are in cmapext code; exit 1 if there are any.  Errors that
merely pass through cmapext's hooks deeper in the stack belong to
PostgreSQL (its own suppressions cover them) and are counted, not shown."""
import re
import sys

ours = re.compile(r"cmap_|cmapext")
shown = 0
other = 0
for path in sys.argv[1:]:
    blocks, cur = [], []
    for line in open(path, errors="replace"):
        line = re.sub(r"^==\d+== ?", "", line.rstrip("\n"))
        if line == "":
            if cur:
                blocks.append(cur)
            cur = []
        else:
            cur.append(line)
    if cur:
        blocks.append(cur)
    for b in blocks:
        if not b or not re.match(r"(Invalid|Syscall param|Conditional jump|Use of uninit|Mismatched|Source and destination|Argument|.*definitely lost)", b[0]):
            continue
        frames = [l for l in b if re.match(r"\s+(at|by) ", l)]
        top = frames[:3]
        origin = []
        for i, l in enumerate(b):
            if "was created by" in l or "Address" in l and "alloc'd" in l:
                origin = b[i + 1:i + 4]
        if any(ours.search(l) for l in top + origin):
            shown += 1
            print("--- %s" % path)
            print("\n".join(b[:25]))
        else:
            other += 1
print("errors with cmapext at the top or as origin: %d; PostgreSQL's own: %d" % (shown, other))
sys.exit(1 if shown else 0)
