"""The runtime (core, io, engine, outputs, runner) never imports the tooling built around it."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import cervisag_edge

PACKAGE = Path(cervisag_edge.__file__).resolve().parent
RUNTIME = ("core", "io", "engine", "outputs", "runner.py", "errors.py", "version.py", "__init__.py")
TOOLING = "cervisag_edge.tooling"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in ``source``, at any depth (lazy imports inside
    functions and ``TYPE_CHECKING`` blocks included), and of every string literal passed to
    ``importlib.import_module``."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
        elif (isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name))
              and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"):
            found += [(node.lineno, a.value) for a in node.args[:1] if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    return found


def tooling_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    return [f"line {line}: {target}" for line, target in imported_modules(source, module, is_package)
            if target == TOOLING or target.startswith(TOOLING + ".")]


def _runtime_files() -> list[Path]:
    files: list[Path] = []
    for name in RUNTIME:
        path = PACKAGE / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


def test_runtime_modules_exist() -> None:
    files = _runtime_files()
    assert all(f.is_file() for f in files)
    assert {f.parent.name for f in files} >= {"core", "io", "engine", "backends", "cuda", "outputs"}


@pytest.mark.parametrize("path", _runtime_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_runtime_does_not_import_tooling(path: Path) -> None:
    bad = tooling_imports(path.read_text(encoding="utf-8"), _module_name(path), path.name == "__init__.py")
    assert not bad, f"{path.relative_to(PACKAGE)} imports the tooling: {bad}"


def test_checker_sees_lazy_relative_and_dynamic_imports() -> None:
    source = (
        "import os\n"
        "def f():\n"
        "    from ...tooling.verify import harness\n"
        "    from ... import tooling\n"
        "    return importlib.import_module('cervisag_edge.tooling.phantom')\n"
        "if TYPE_CHECKING:\n"
        "    import cervisag_edge.tooling.latency.bench\n"
        "from ..codec import X\n"
    )
    bad = tooling_imports(source, "cervisag_edge.engine.backends.torch")
    assert sorted({int(b.split(":")[0].split()[1]) for b in bad}) == [3, 4, 5, 7]


@pytest.mark.parametrize("old", ["pipeline", "engine_select", "backends", "cuda", "bench", "bench_read", "phantom",
                                 "training", "verify", "imaging", "codec", "preprocess", "manifest", "parameters"])
def test_old_module_paths_are_gone(old: str) -> None:
    """No compatibility shims: each module has one home."""
    assert not (PACKAGE / f"{old}.py").exists() and not (PACKAGE / old).exists()
