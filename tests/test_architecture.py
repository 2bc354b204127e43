"""The layer contract (pyproject.toml [tool.importlinter]) holds, and no module takes part in an import cycle.

Both checks read the import graph that grimp builds from the source, so function-local imports
count like top-level ones.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("evhw", "rtl_gen", "sim", "firmware")


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph(*PACKAGES, cache_dir=None)


def contracts():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_import_contract_kept():
    """``lint-imports`` (import-linter) with the contracts in pyproject.toml."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
                        "--no-cache", str(ROOT / "pyproject.toml")],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout


def test_every_module_is_in_a_layer(graph):
    """A new module or subpackage must be placed in the contract, not slip past it."""
    layers = next(c for c in contracts() if c["type"] == "layers")["layers"]
    named = {m.strip().strip("()") for layer in layers for m in layer.replace("|", ":").split(":")}
    missing = []
    for pkg in PACKAGES:
        children = graph.find_children(pkg)
        if pkg in named:
            continue
        missing += sorted(c for c in children if c not in named and
                          not any(c.startswith(n + ".") or n.startswith(c + ".") for n in named))
    assert not missing, f"modules in no layer of pyproject.toml's layers contract: {', '.join(missing)}"


def strongly_connected(graph, modules):
    """Tarjan's strongly connected components of the import graph restricted to ``modules``."""
    index, low, stack, on_stack, comps = {}, {}, [], set(), []
    counter = [0]
    edges = {m: sorted(graph.find_modules_directly_imported_by(m) & modules) for m in modules}

    for root in sorted(modules):
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(edges[nxt])))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        comp.append(m)
                        if m == node:
                            break
                    comps.append(sorted(comp))
    return comps


def describe_cycle(graph, comp):
    """One cycle through the first module of ``comp``, each step with its file line: ``a (l. 3) -> b -> a``."""
    first = comp[0]
    for nxt in sorted(graph.find_modules_directly_imported_by(first) & set(comp)):
        back = graph.find_shortest_chain(importer=nxt, imported=first)
        if back:
            chain = (first,) + tuple(back)
            steps = []
            for a, b in zip(chain, chain[1:]):
                lines = [d["line_number"] for d in graph.get_import_details(importer=a, imported=b)]
                steps.append(f"{a} (line {min(lines)})" if lines else a)
            return " -> ".join(steps + [first])
    return " <-> ".join(comp)


def test_strongly_connected_finds_a_cycle():
    """The cycle finder itself: a three-module ring is found and named, a chain is not a cycle."""
    g = grimp.ImportGraph()
    for m in ("p", "p.a", "p.b", "p.c", "p.d"):
        g.add_module(m)
    for a, b in (("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d")):
        g.add_import(importer=a, imported=b, line_number=1, line_contents=f"import {b}")
    comps = [c for c in strongly_connected(g, {"p.a", "p.b", "p.c", "p.d"}) if len(c) > 1]
    assert comps == [["p.a", "p.b", "p.c"]]
    assert describe_cycle(g, comps[0]) == "p.a (line 1) -> p.b (line 1) -> p.c (line 1) -> p.a"


def test_no_import_cycles(graph):
    modules = {m for m in graph.modules if m.split(".")[0] in PACKAGES}
    cycles = [c for c in strongly_connected(graph, modules)
              if len(c) > 1 or c[0] in graph.find_modules_directly_imported_by(c[0])]
    assert not cycles, "import cycles (function-local imports included):\n" + \
        "\n".join(describe_cycle(graph, c) for c in cycles)
