"""The subpackages import one another one way: no cycles, and the lower layers never reach
the upper ones (geometry never reaches model, the runtime never reaches the exporter, the
model never reaches a runtime, eval never reaches training code).

Every import counts, also those inside functions. Run with ``-s`` to see the graph.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"occdepth_ros": ROOT / "occdepth_ros", "occdepth_export": ROOT / "export" / "occdepth_export"}
# Pairs (a, b): a must never import b, directly or through others.
FORBIDDEN = [
    ("geometry", "model"),
    ("runtime", "export"),
    ("model", "runtime"),
    ("inference", "node"),
    ("eval", "train"),
    ("fusion", "node"),  # the temporal map is plain Python below the ROS node and the tools
    ("fusion", "tools"),  # training validates with eval's metrics; eval never needs training code
]


def subpackage(module: str) -> str | None:
    """``occdepth_ros.x.y`` -> ``x``; the exporter package is ``export``; top-level modules keep their name."""
    parts = module.split(".")
    if parts[0] == "occdepth_export":
        return "export"
    if parts[0] != "occdepth_ros" or len(parts) < 2:
        return None
    return parts[1]


def module_name(top: str, folder: Path, path: Path) -> tuple[list[str], bool]:
    parts = [top, *path.relative_to(folder).with_suffix("").parts]
    is_package = parts[-1] == "__init__"
    return (parts[:-1] if is_package else parts), is_package


def imported_modules(tree: ast.AST, parts: list[str], is_package: bool) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[: len(parts) - node.level + (1 if is_package else 0)]
                stem = ".".join(base + ([node.module] if node.module else []))
                out += [stem] if node.module else [f"{stem}.{alias.name}" for alias in node.names]
            else:
                out.append(node.module)
    return out


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for top, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts, is_package = module_name(top, folder, path)
            me = subpackage(".".join(parts)) if len(parts) > 1 or top == "occdepth_export" else None
            if me is None:
                continue
            graph.setdefault(me, set())
            for target in imported_modules(ast.parse(path.read_text()), parts, is_package):
                other = subpackage(target)
                if other and other != me:
                    graph[me].add(other)
    return dict(graph)


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def describe(graph: dict[str, set[str]]) -> str:
    return "\n".join(f"{name:>12} -> {', '.join(sorted(graph[name])) or '-'}" for name in sorted(graph))


def test_subpackage_graph_has_no_cycle() -> None:
    graph = import_graph()
    print("\n" + describe(graph))
    cycles = sorted(name for name in graph if name in reachable(graph, name))
    assert not cycles, f"subpackages on an import cycle: {cycles}\n{describe(graph)}"


def test_pipeline_order_holds() -> None:
    graph = import_graph()
    broken = [f"{a} reaches {b}" for a, b in FORBIDDEN if b in reachable(graph, a)]
    assert not broken, f"{broken}\n{describe(graph)}"


def test_the_graph_sees_imports_inside_functions(tmp_path) -> None:
    code = "def f():\n    from ..runtime import base\n    import occdepth_export.backends\n"
    found = imported_modules(ast.parse(code), ["occdepth_ros", "node", "x"], False)
    assert {subpackage(m) for m in found} == {"runtime", "export"}
