"""The package's shape: the config imports without torch, module imports form no cycle, and
modules stay small enough to read (config.py's fields are the docs; allocation.py is the
method)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "src" / "gvm_raft"
LONG_MODULES_ALLOWED = {"config.py", "allocation.py"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_imports() -> dict[str, set[str]]:
    """Each module's imports of other package modules at module level (a TYPE_CHECKING block
    included; imports inside functions, which run on first use, left out)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        statements = []
        for node in ast.parse(path.read_text()).body:
            statements += node.body if isinstance(node, ast.If) else [node]
        imported = set()
        for node in statements:
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
                imported |= {f"{node.module}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
        graph[name] = {m for m in imported if m in modules and m != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_a_cycle_and_only_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_among_the_package_modules():
    graph = module_imports()
    assert "gvm_raft.rundir" in graph["gvm_raft.report"]  # the walk sees imports
    assert find_cycle(graph) is None


def test_the_config_imports_without_torch():
    code = "import sys, gvm_raft.config; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_modules_stay_under_500_lines():
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 500 and p.name not in LONG_MODULES_ALLOWED
    }
    assert not long
    assert len((PACKAGE / "cli.py").read_text().splitlines()) < 350  # the CLI only parses
