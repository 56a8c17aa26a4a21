"""The package layout: no import cycles between modules, a short top level, mirrored tests.

The import graph is read from the source with ``ast`` (no import runs): every ``import`` and
``from ... import`` of ``napari_fanet``, at module level and inside functions (the lazy imports
that keep torch out of startup), relative ones included. An edge goes to the module named, or
to ``package.name`` when that is a module itself. The ``layers`` contract of import-linter in
``pyproject.toml`` (run by ``lint-imports``) checks the direction between packages; this test
checks that no two modules, even inside one package, need each other.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

import napari_fanet

PACKAGE_DIR = Path(napari_fanet.__file__).resolve().parent
TESTS_DIR = Path(__file__).resolve().parent
MAX_TOP_LEVEL_MODULES = 10
#: Branches on which task it is (issue 16): ``task ==``, ``task !=``, ``task in (...)``, a
#: task-ish name (``task_name``, ``request.task``) compared with a string literal either way,
#: and anything compared with a task or command name (``== "qsm"``, ``"segment" !=``).
TASK_BRANCH = re.compile(
    r"task\s*(==|!=)"
    r"|task\s+(not\s+)?in\s*\("
    r"|task\w*\s*(==|!=)\s*[\"']"
    r"|[\"']\s*(==|!=)\s*[\w.]*task\w*\b"
    r"|(==|!=)\s*[\"'](segment|segmentation|qsm|ms)[\"']"
    r"|[\"'](segment|segmentation|qsm|ms)[\"']\s*(==|!=)"
)


def module_names(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """``{dotted module name: file}`` for every ``.py`` file of the package."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = [package_dir.name, *path.relative_to(package_dir).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """Absolute dotted names each import statement of ``tree`` may refer to."""
    here = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            yield source
            yield from (f"{source}.{alias.name}" for alias in node.names)


def import_graph(modules: Mapping[str, Path]) -> dict[str, set[str]]:
    """``{module: modules it imports}`` restricted to the package's own modules."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for target in _imported_names(tree, name, path.name == "__init__.py"):
            if target in modules and target != name:
                graph[name].add(target)
    return graph


def find_cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c"}}, [["a", "b"], ["c", "d"]]),
    ],
)
def test_find_cycles_on_small_graphs(graph, expected) -> None:
    assert sorted(find_cycles(graph)) == expected


def test_import_graph_sees_relative_and_function_level_imports(tmp_path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from .sub import b\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text("from pkg import a\n")
    graph = import_graph(module_names(package))
    assert graph["pkg.a"] == {"pkg.sub", "pkg.sub.b"}
    assert graph["pkg.sub.b"] == {"pkg", "pkg.a"}
    assert find_cycles(graph) == [["pkg.a", "pkg.sub.b"]]


def test_the_graph_covers_the_package() -> None:
    graph = import_graph(module_names())
    assert "napari_fanet.cli.predict" in graph
    assert "napari_fanet.cli.base" in graph["napari_fanet.cli.predict"]
    # a lazy, function-level import is an edge too
    assert "napari_fanet.engine.predict" in graph["napari_fanet.cli.base"]


def test_no_import_cycles() -> None:
    cycles = find_cycles(import_graph(module_names()))
    assert cycles == [], "import cycles between modules:\n" + "\n".join(map(str, cycles))


def test_top_level_has_at_most_ten_modules() -> None:
    modules = sorted(p.name for p in PACKAGE_DIR.glob("*.py"))
    assert len(modules) <= MAX_TOP_LEVEL_MODULES, f"{len(modules)} top-level modules: {modules}"


def test_test_module_basenames_are_unique() -> None:
    # tests/ is not a package: pytest imports every test module by its file name, so two
    # folders may not hold test files of the same name.
    seen: dict[str, Path] = {}
    duplicates = []
    for path in sorted(TESTS_DIR.rglob("*.py")):
        if path.name == "conftest.py" or "__pycache__" in path.parts:
            continue
        if path.name in seen:
            duplicates.append((seen[path.name], path))
        seen[path.name] = path
    assert duplicates == []


def task_branches(package_dir: Path = PACKAGE_DIR) -> list[str]:
    """``path:line: code`` of every task branch outside the ``tasks`` package."""
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        relative = path.relative_to(package_dir)
        if relative.parts[0] == "tasks" or "__pycache__" in relative.parts:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if TASK_BRANCH.search(line):
                found.append(f"{relative}:{number}: {line.strip()}")
    return found


@pytest.mark.parametrize(
    ("line", "branch"),
    [
        ('if task == "qsm":', True),
        ("if model.config.task != task:", True),
        ('for task in ("ms", "qsm"):', True),
        ('seg = self.task_name == "segmentation"', True),
        ('if "qsm" == request.task:', True),
        ('if _check_task(task) == "segment":', True),
        ('if info.get("task") == "segmentation":', True),
        ("if task.phase_input:", False),
        ("chosen = get_task(task)", False),
        ("if get_task(entry.task) is self.current_task:", False),
    ],
)
def test_task_branch_pattern(line, branch) -> None:
    assert bool(TASK_BRANCH.search(line)) is branch


def test_task_branches_are_found_outside_tasks_only(tmp_path) -> None:
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "qsm.py").write_text('if task == "qsm":\n    pass\n')
    (tmp_path / "engine.py").write_text('x = 1\nif task != "qsm":\n    pass\n')
    assert task_branches(tmp_path) == ['engine.py:2: if task != "qsm":']


def test_no_task_branches_outside_tasks() -> None:
    # Training, prediction, evaluation, the CLI and the widgets look a Task up by name and call
    # it (napari_fanet.tasks); only the tasks package may say what differs between tasks.
    found = task_branches()
    assert found == [], "task branches outside napari_fanet/tasks:\n" + "\n".join(found)


#: The model-internal name of the canonical axes, as in ``(D, H, W)``, ``(B, C, D, H, W)``.
MODEL_AXES = re.compile(r"\bD, H, W\)")
#: Files allowed to use the models' notation outside ``models/`` (none: the inspector's factor
#: rows are still called D, H, W after FA_SPEC, but its grids are (X, Y, Z)).
MODEL_AXES_ALLOWED: tuple[str, ...] = ()


def model_axes_outside_models(package_dir: Path = PACKAGE_DIR) -> list[str]:
    """``file:line: text`` for every ``(..., D, H, W)`` outside ``models/`` (and the allowed)."""
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        rel = path.relative_to(package_dir).as_posix()
        if rel.startswith("models/") or rel in MODEL_AXES_ALLOWED:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if MODEL_AXES.search(line):
                found.append(f"{rel}:{number}: {line.strip()}")
    return found


def test_model_axes_are_found_outside_models_only(tmp_path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "unet.py").write_text('"""Input ``(B, C, D, H, W)``."""\n')
    (tmp_path / "metrics.py").write_text('"""Maps ``(X, Y, Z)``."""\nx = 1  # (3, D, H, W)\n')
    assert model_axes_outside_models(tmp_path) == ["metrics.py:2: x = 1  # (3, D, H, W)"]


def test_canonical_axes_are_x_y_z_outside_models() -> None:
    # Arrays are (X, Y, Z) in canonical (RAS+) orientation and network tensors (B, C, X, Y, Z);
    # only models/ keeps the FA spec's (B, C, D, H, W), where D, H, W are X, Y, Z.
    found = model_axes_outside_models()
    assert found == [], "(D, H, W) outside napari_fanet/models:\n" + "\n".join(found)
