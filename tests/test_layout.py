"""The house rules of the layout (docs/internals.md): no import cycle among the project's modules,
counting imports inside functions; no module over 700 lines; ``tracing.core`` imports no ``sim``."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ble", "sim", "tracing")
MAX_LINES = 700


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for p in sorted((ROOT / pkg).rglob("*.py")):
            parts = p.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            mods[name] = p
    return mods


def import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its body (``ast.walk``: imports inside
    functions count). ``from a.b import c`` counts ``a.b.c`` when that is a module, else ``a.b``."""
    graph = {}
    for name, path in mods.items():
        is_pkg = path.name == "__init__.py"
        out = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = base[:len(base) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module
                subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in mods]
                targets = subs or [mod]
            else:
                continue
            out.update(t for t in targets if t in mods and t != name)
        graph[name] = out
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_detector_finds_a_planted_cycle():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(g) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    found = cycles(import_graph(_modules()))
    assert not found, f"import cycles: {found}"


def test_arrows_point_down():
    graph = import_graph(_modules())
    for name, deps in graph.items():
        if name.startswith("ble"):
            assert not [d for d in deps if not d.startswith("ble")], f"{name} imports {deps}"
        if name.startswith("sim"):
            assert not [d for d in deps if d.startswith("tracing")], f"{name} imports {deps}"
        if name.startswith("tracing.core"):
            bad = [d for d in deps if not (d.startswith("tracing.core") or d.startswith("ble"))]
            assert not bad, f"{name} imports {bad} (tracing.core imports only ble and itself)"


@pytest.mark.parametrize("name", sorted(_modules()))
def test_module_length(name):
    n = len(_modules()[name].read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{name} has {n} lines (> {MAX_LINES}): split it along its concepts"
