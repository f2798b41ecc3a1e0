"""The package's import graph has no cycle, lazy imports included, and every module imports on its own.

The graph is read from the source with the stdlib (``ast``): every ``import`` and ``from ... import``
statement of a module, at the top or inside a function, is an edge to the module it names (``from pkg import
name`` names ``pkg.name`` when that is a module, else ``pkg``). Imports under ``if TYPE_CHECKING:`` do not run
and are left out. A cycle means two modules each need the other: one of them holds code that lives in the
wrong place (issue 15).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = "realtime_vrn"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / PACKAGE


def module_files(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package (packages by their __init__)."""
    out = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _runtime_imports(tree: ast.AST):
    """Import nodes that run: everything except the bodies of ``if TYPE_CHECKING:``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules that module ``name`` (source ``path``) imports anywhere in its code."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        for target in targets:
            while target and target not in modules:  # import a.b.c where c is a name: the module a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted; sorted by first name."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(components)


#: Cycles left on purpose, each with the reason; the list must match exactly (a new cycle fails, and so does a
#: fixed one still listed). Empty: issue 15 removed the last ones (training's shard layout and mesh helpers got
#: modules of their own).
KNOWN_CYCLES: dict[tuple[str, ...], str] = {}


def _cycle_report(cycles: list[list[str]]) -> str:
    return "\n".join(" <-> ".join(c) for c in cycles) or "(none)"


def test_the_package_has_no_import_cycle():
    cycles = find_cycles(import_graph(module_files()))
    new = [c for c in cycles if tuple(c) not in KNOWN_CYCLES]
    assert not new, ("import cycles (each line: modules that import each other, directly or through the others):\n"
                     + _cycle_report(new))
    fixed = sorted(set(KNOWN_CYCLES) - {tuple(c) for c in cycles})
    assert not fixed, f"no longer cycles, remove them from KNOWN_CYCLES: {fixed}"


def test_the_cycle_finder_sees_a_lazy_import_cycle(tmp_path):
    """The check can fail: a cycle closed by an import inside a function is found."""
    pkg = tmp_path / PACKAGE
    (pkg / "stage").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "stage" / "__init__.py").write_text("")
    (pkg / "pipeline.py").write_text("from realtime_vrn.stage.a import f\n")
    (pkg / "stage" / "a.py").write_text("def f():\n    from ..pipeline import g\n")
    (pkg / "stage" / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                        "    from realtime_vrn import pipeline\n")
    modules = module_files(pkg)
    assert find_cycles(import_graph(modules)) == [[f"{PACKAGE}.pipeline", f"{PACKAGE}.stage.a"]]


def test_every_module_imports_in_a_fresh_interpreter():
    """Each module imports on its own (in a new interpreter, one after another in the order of the tree)."""
    names = [n for n in module_files() if not n.endswith("__main__")]
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    result = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize("name", ["realtime_vrn.cli", "realtime_vrn.pipeline"])
def test_entry_modules_import_without_the_stages(name):
    """Importing the CLI or the pipeline module loads no GPU runtime (the stages import theirs lazily)."""
    code = (f"import sys, importlib; importlib.import_module({name!r}); "
            "print(sorted(m for m in ('cupy', 'tensorrt', 'moderngl') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]"


def test_the_help_and_the_parser_load_no_torch():
    """``realtime-vrn --help`` (and any argument error) answers without importing torch (~1.5 s here): the
    parser's modules import the weights registry, which needs torch, only inside the commands."""
    code = ("import sys\nfrom realtime_vrn.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "usage: realtime-vrn" in result.stdout
    assert result.stderr.strip().splitlines()[-1] == "False", result.stderr[-3000:]
