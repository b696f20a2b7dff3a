"""The layer rule: a module imports only from its own floor or a lower one.

Floors (LAYOUT.md §2): 0 the package face and shared utilities; 1 imaging and metrics
(torch-free); 2 model and data; 3 inference; 4 index, dedup, training, evaluation, viz;
5 cli and server. Every ``import lookalike…`` in ``src/`` is read from the AST, including
imports inside functions and under ``TYPE_CHECKING``, so a lazy import cannot sneak a
cycle back in. The package root (``lookalike/__init__.py``) is the public face and may
name anything lazily.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "lookalike"

FLOORS: dict[str, int] = {
    "errors": 0,
    "_io": 0,
    "_lazy": 0,
    "_progress": 0,
    "_limits": 0,
    "_version": 0,
    "__main__": 5,
    "samples": 0,
    "imaging": 1,
    "metrics": 1,
    "model": 2,
    "data": 2,
    "inference": 3,
    "index": 4,
    "dedup": 4,
    "training": 4,
    "evaluation": 4,
    "viz": 4,
    "web": 4,
    "cli": 5,
    "server": 5,
}

TORCH_FREE_PACKAGES = ("imaging", "metrics")
TORCH_FREE_MODULES = (
    "lookalike.model.card",
    "lookalike.model.backbones.specs",
    "lookalike.inference.source",
    "lookalike.inference.select",
    "lookalike.inference.onnx_engine",
    "lookalike.inference.heads",
    "lookalike.model.head_file",
    "lookalike.web.site",
)


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


KNOWN = {m for m, _ in _modules()}


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("lookalike"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                name = ".".join([*base, *([node.module] if node.module else [])])
            else:
                name = node.module or ""
            if name.startswith("lookalike"):
                # `from lookalike.x import y` names the submodule y when there is one;
                # otherwise it reads an attribute of lookalike.x.
                subs = {f"{name}.{a.name}" for a in node.names}
                modules = subs & KNOWN
                found.update(modules)
                if len(modules) < len(subs):
                    found.add(name)
    return found


def _floor(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None  # the package face
    return FLOORS.get(parts[1])


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_subpackage_has_a_floor() -> None:
    tops = {_package(m) for m, _ in _modules()} - {""}
    assert tops <= set(FLOORS), f"no floor for {sorted(tops - set(FLOORS))}"


def test_no_module_imports_from_a_higher_floor() -> None:
    known = {m for m, _ in _modules()}
    upward = []
    for module, path in _modules():
        own = _floor(module)
        if own is None:
            continue
        for name in sorted(_imports(path, module)):
            if name not in known:
                continue  # an attribute, not a module
            target = _floor(name)
            if name == "lookalike":
                upward.append(f"{module} -> lookalike (the public face)")
            elif target is not None and target > own:
                upward.append(f"{module} (floor {own}) -> {name} (floor {target})")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_import_cycles_between_modules() -> None:
    known = {m for m, _ in _modules()}
    graph = {}
    for module, path in _modules():
        if module == "lookalike":
            continue
        graph[module] = {n for n in _imports(path, module) if n in known and n != module}
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize(
    "module",
    [f"lookalike.{p}" for p in TORCH_FREE_PACKAGES]
    + [m for m in TORCH_FREE_MODULES if (SRC.parent / (m.replace(".", "/") + ".py")).exists()]
    + ["lookalike"],
)
def test_torch_free_modules_do_not_import_torch(module: str) -> None:
    code = (
        "import importlib, sys\n"
        f"importlib.import_module({module!r})\n"
        "assert 'torch' not in sys.modules, 'imported torch'\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
