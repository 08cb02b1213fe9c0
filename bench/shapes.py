"""One table of bench/bench.sh's runs over several shapes (and an older build):
shapes.py BASE SHAPE... reads BASE/<shape>-agent/results.tsv and, where it exists,
BASE/<shape>-before/results.tsv (rows: scenario, limit, agent, limit RSS, agent RSS)."""
import os
import sys


def rows(p):
    if not os.path.exists(p):
        return []
    return [line.rstrip("\n").split("\t") for line in open(p)]


def ratio(a, limit):
    try:
        return "%.2f×" % (float(a) / float(limit))
    except ValueError:
        return ""


base, shapes = sys.argv[1], sys.argv[2:]
has_before = any(os.path.exists(f"{base}/{s}-before/results.tsv") for s in shapes)
head = ["scenario", "shape", "limit"]
head += ["before", "agent", "before / limit", "agent / limit"] if has_before else ["agent", "agent / limit"]
head += ["agent RSS"]
print("| " + " | ".join(head) + " |")
print("| --- | --- |" + " ---: |" * (len(head) - 2))
for shape in shapes:
    before = rows(f"{base}/{shape}-before/results.tsv")
    for i, (what, limit, agent, _lmb, amb) in enumerate(rows(f"{base}/{shape}-agent/results.tsv")):
        b = before[i] if i < len(before) and before[i][0] == what else None
        cells = [what, shape, limit if limit != "-" else ""]
        if has_before:
            cells += [b[2] if b else "", agent, ratio(b[2], b[1]) if b else "", ratio(agent, limit)]
        else:
            cells += [agent, ratio(agent, limit)]
        cells.append(amb + " MB")
        print("| " + " | ".join(cells) + " |")
