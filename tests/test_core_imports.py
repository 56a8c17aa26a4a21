"""The core stays GUI-free: only the napari adapters may import Qt, magicgui or napari.

This is the same contract as the import-linter one in pyproject.toml, but it finds the core
modules by walking the source tree, so a new module is covered the day it is added.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import napari_fanet

PACKAGE_DIR = Path(napari_fanet.__file__).resolve().parent
GUI_PACKAGES = frozenset({"qtpy", "magicgui", "napari", "PyQt5", "PyQt6", "PySide2", "PySide6"})

# The napari side of the package (see napari.yaml): these may import GUI packages.
ADAPTER_NAMES = frozenset({"_widgets", "_reader", "_writer", "_sample_data"})
ADAPTER_PREFIXES = ("_widget", "_napari", "_qt")


def is_adapter(relpath: Path) -> bool:
    """Whether a path relative to the package dir belongs to the napari adapters."""
    parts = [*relpath.parts[:-1], relpath.stem]
    return any(p in ADAPTER_NAMES or p.startswith(ADAPTER_PREFIXES) for p in parts)


def module_name(relpath: Path) -> str:
    parts = list(relpath.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["napari_fanet", *parts])


CORE_FILES = sorted(
    p.relative_to(PACKAGE_DIR)
    for p in PACKAGE_DIR.rglob("*.py")
    if "__pycache__" not in p.parts and not is_adapter(p.relative_to(PACKAGE_DIR))
)
CORE_MODULES = [module_name(p) for p in CORE_FILES]


@pytest.mark.parametrize(
    ("relpath", "expected"),
    [
        ("__init__.py", False),
        ("physics/dipole.py", False),
        ("models/folded_attention.py", False),
        ("engine/_train_loop.py", False),
        ("_reader.py", True),
        ("_writer.py", True),
        ("_sample_data.py", True),
        ("_widgets/__init__.py", True),
        ("_widgets/train.py", True),
        ("_widget_segment.py", True),
        ("_napari_utils.py", True),
        ("_qt/progress.py", True),
    ],
)
def test_adapter_rule(relpath: str, expected: bool) -> None:
    assert is_adapter(Path(relpath)) is expected


def test_core_modules_found() -> None:
    assert "napari_fanet" in CORE_MODULES
    assert "napari_fanet.models" in CORE_MODULES


def _gui_imports(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [f"line {node.lineno}: {n}" for n in names if n.split(".")[0] in GUI_PACKAGES]
    return found


@pytest.mark.parametrize("relpath", CORE_FILES, ids=str)
def test_core_source_has_no_gui_imports(relpath: Path) -> None:
    source = (PACKAGE_DIR / relpath).read_text(encoding="utf-8")
    bad = _gui_imports(ast.parse(source, filename=str(relpath)))
    assert not bad, f"{relpath} (core) imports GUI packages: {bad}"


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"python -c exited {proc.returncode}:\n{proc.stderr}", pytrace=False)
    return proc


def test_core_imports_no_gui_transitively() -> None:
    code = f"""
        import importlib, json, sys
        for name in {CORE_MODULES!r}:
            importlib.import_module(name)
        gui = {sorted(GUI_PACKAGES)!r}
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in gui)))
    """
    loaded = json.loads(_run_python(code).stdout.strip().splitlines()[-1])
    assert loaded == [], f"importing the core loaded GUI modules: {loaded}"


def test_package_import_is_light() -> None:
    code = """
        import json, sys
        import napari_fanet
        heavy = ("torch", "monai", "napari", "qtpy", "magicgui", "PyQt5", "PyQt6")
        print(json.dumps(sorted(m for m in heavy if m in sys.modules)))
    """
    loaded = json.loads(_run_python(code).stdout.strip().splitlines()[-1])
    assert loaded == [], f"`import napari_fanet` imported {loaded}"
