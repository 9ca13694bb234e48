#!/usr/bin/env python3
"""The import graph of src/: which top-level module (a file or a folder under src/) refers to which
(`use crate::x…`, `crate::x::…` in code), the arrows that run up against the intended layering,
and the circles (strongly connected groups of more than one module).

    python3 tools/import_graph.py            a summary
    python3 tools/import_graph.py --arrows   every arrow, with the files behind it

The layering, top first: a module may refer to modules in later rows only (and to its own row's
peers only where the row says so). Arrows to an earlier row run up.
"""
import re
import sys
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"

# Top first. Modules in one row may not refer to each other unless the row is marked shared.
LAYERS = [
    ["main", "lib"],
    ["commands"],
    ["screen"],
    ["cli"],
    ["engine"],
    ["changeset"],
    ["notify", "activity"],
    ["coord"],
    ["store"],
    ["sqlite", "pages"],
    ["manifest", "settings"],
    ["layout"],
    ["output", "telemetry"],
    ["process", "interrupt"],
    ["names", "fsutil", "util"],
    ["error"],
]

RANK = {m: i for i, row in enumerate(LAYERS) for m in row}
REF = re.compile(r"\bcrate::(\{[^}]*\}|[a-z_][a-z0-9_]*)")


def module_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def refs(text: str):
    # Comments and strings are not imports.
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    for m in REF.finditer(text):
        target = m.group(1)
        if target.startswith("{"):
            for part in target[1:-1].split(","):
                name = part.strip().split("::")[0].strip()
                if name and name != "self":
                    yield name
        else:
            yield target


def graph():
    edges = defaultdict(set)  # (a, b) -> files
    nodes = set()
    for path in sorted(SRC.rglob("*.rs")):
        a = module_of(path)
        nodes.add(a)
        for b in refs(path.read_text()):
            if b != a and ((SRC / f"{b}.rs").exists() or (SRC / b).is_dir()):
                edges[(a, b)].add(str(path.relative_to(SRC)))
    return nodes, edges


def circles(nodes, edges):
    succ = defaultdict(set)
    for a, b in edges:
        succ[a].add(b)
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def main():
    nodes, edges = graph()
    unranked = sorted(n for n in nodes if n not in RANK)
    up = sorted((a, b) for (a, b) in edges if a in RANK and b in RANK and RANK[b] <= RANK[a])
    groups = circles(nodes, edges)
    print(f"modules: {len(nodes)}  arrows: {len(edges)}  arrows up: {len(up)}  circles: {len(groups)}")
    for g in groups:
        print(f"  circle of {len(g)}: {' '.join(g)}")
    for a, b in up:
        print(f"  up: {a} -> {b}  ({', '.join(sorted(edges[(a, b)]))})")
    if unranked:
        print(f"  not in the layering: {' '.join(unranked)}")
    if "--arrows" in sys.argv:
        for (a, b), files in sorted(edges.items()):
            print(f"{a} -> {b}: {', '.join(sorted(files))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
