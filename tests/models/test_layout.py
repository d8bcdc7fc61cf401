"""The shape of embedlab.models: imports flow one way (no circle, nothing upward), no state set at import."""

from __future__ import annotations

import ast
from pathlib import Path

import embedlab.models

ROOT = Path(embedlab.models.__file__).parent
# what models/ may import from embedlab: the shared values, errors and kernels below it, and itself
ALLOWED = ("embedlab.errors", "embedlab.types", "embedlab.files", "embedlab.params", "embedlab.models")


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text(), str(path))
    return out


def _imports(tree: ast.Module) -> set[str]:
    """Every embedlab module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("embedlab"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("embedlab"))
    return found


def test_models_imports_only_below_itself():
    for name, tree in _modules().items():
        for target in _imports(tree):
            assert target.startswith(ALLOWED), f"{name} imports {target}"


def test_no_import_circle_in_models():
    modules = _modules()
    graph = {name: {t for t in _imports(tree) if t in modules and t != name} for name, tree in modules.items()}
    done, active = set(), []

    def visit(node: str) -> None:
        assert node not in active, "import circle: " + " -> ".join(active[active.index(node):] + [node])
        if node in done:
            return
        active.append(node)
        for target in sorted(graph[node]):
            visit(target)
        active.pop()
        done.add(node)

    for name in sorted(graph):
        visit(name)


def _run_at_import(node: ast.AST):
    """The nodes of ``node`` that run when the module is imported (function bodies skipped)."""
    yield node
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield from _run_at_import(child)


def test_nothing_reads_or_writes_process_state_at_import():
    for name, tree in _modules().items():
        for node in _run_at_import(tree):
            if isinstance(node, (ast.Attribute, ast.Call)):
                text = ast.unparse(node)
                assert not text.startswith(("os.environ", "os.getenv", "os.putenv", "torch.set_num_threads")), \
                    f"{name}: {text} at import"
