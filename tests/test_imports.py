"""Package boundaries: no import circles, the core's layers import only downward, and the core imports no track.

Run: `python -m pytest -q tests/test_imports.py`. The imports are read with `ast`, so nothing is imported;
imports inside functions count like module-level ones (a lazy import must not hide a circle).
"""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import PROJECT_ROOT

PACKAGES = ("competition", "baselines", "llm", "ensemble", "tuning", "kfold")
CORE = "competition"
# The core's layers, bottom first: a module imports its own layer and those below it; the command modules directly
# under competition/ (validate, score, submit, ...) stand above all three.
CORE_LAYERS = ("competition.rules", "competition.harness", "competition.modeling")
COMMANDS_LAYER = len(CORE_LAYERS)
TORCH_LIBRARIES = {"torch", "transformers", "peft", "accelerate", "bitsandbytes", "liger_kernel"}
ERROR_NAMES = {"DataError", "ConfigError", "BAD_INPUT_EXIT_CODE"}
ERRORS_MODULE = "competition.rules.errors"


def module_name(path: Path) -> str:
    """`competition/rules/data.py` -> `competition.rules.data`; `ensemble/__init__.py` -> `ensemble`."""
    parts = list(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def python_files(folders: tuple[str, ...]) -> list[Path]:
    """Every .py file under the given top-level folders."""
    return [path for folder in folders for path in sorted((PROJECT_ROOT / folder).rglob("*.py"))]


def project_modules() -> dict[str, Path]:
    """Every module of the packages, by dotted name."""
    return {module_name(path): path for path in python_files(PACKAGES)}


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Project modules that `path` imports anywhere in its body (`from pkg import mod` names the submodule)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & known
            found.update(submodules or {node.module})
    return found & known


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (itself excluded)."""
    modules = project_modules()
    known = set(modules)
    return {name: imported_modules(path, known) - {name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as `[a, b, ..., a]`, or None (depth-first search with an explicit path)."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        for target in sorted(graph[node]):
            cycle = visit(target, path + [node])
            if cycle:
                return cycle
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start, [])
        if cycle:
            return cycle
    return None


def test_the_walk_sees_every_package_and_function_level_imports() -> None:
    graph = import_graph()
    assert {name.split(".")[0] for name in graph} == set(PACKAGES)
    assert "competition.rules.data" in graph["competition.rules.submission"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_function_level_imports_are_in_the_graph(tmp_path: Path) -> None:
    source = tmp_path / "lazy.py"
    source.write_text("def f():\n    from competition.rules import data\n    import ensemble.report\n", encoding="utf-8")
    assert imported_modules(source, {"competition", "competition.rules.data", "ensemble.report"}) == {
        "competition.rules.data", "ensemble.report"}


def test_no_import_circle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_shared_core_imports_no_track() -> None:
    graph = import_graph()
    crossing = sorted(f"{name} -> {target}" for name, targets in graph.items() if name.split(".")[0] == CORE
                      for target in targets if target.split(".")[0] != CORE)
    assert not crossing, f"{CORE}/ must not import the tracks, ensembling or tuning: {crossing}"


def core_layer(module: str) -> int:
    """0 rules, 1 harness, 2 modeling, 3 a command module (or the package itself)."""
    return next((index for index, layer in enumerate(CORE_LAYERS) if module == layer or module.startswith(layer + ".")),
                COMMANDS_LAYER)


def imported_libraries(path: Path) -> set[str]:
    """Top-level names of everything `path` imports anywhere (`torch` for `import torch.nn`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_every_core_module_sits_in_a_layer_or_is_a_command() -> None:
    graph = import_graph()
    core = sorted(name for name in graph if name.split(".")[0] == CORE)
    layered = {layer: [name for name in core if core_layer(name) == index] for index, layer in enumerate(CORE_LAYERS)}
    assert all(layered.values()), layered
    assert core_layer("competition.rules.metric") == 0 and core_layer("competition.score") == COMMANDS_LAYER


def test_core_layers_import_only_downward() -> None:
    graph = import_graph()
    upward = sorted(f"{name} -> {target}" for name, targets in graph.items() if name.split(".")[0] == CORE
                    for target in targets if target.split(".")[0] == CORE and core_layer(target) > core_layer(name))
    assert not upward, f"a core layer imports a layer above it ({' < '.join(CORE_LAYERS)} < commands): {upward}"


def test_the_rules_import_no_torch() -> None:
    rules = [path for name, path in sorted(project_modules().items()) if core_layer(name) == 0 and name != CORE]
    heavy = {str(path.relative_to(PROJECT_ROOT)): sorted(imported_libraries(path) & TORCH_LIBRARIES)
             for path in rules if imported_libraries(path) & TORCH_LIBRARIES}
    assert rules and not heavy, f"{CORE_LAYERS[0]} must not import torch or its libraries: {heavy}"


def test_the_fence_sees_an_upward_import(tmp_path: Path) -> None:
    source = tmp_path / "upward.py"
    source.write_text("import torch\nfrom competition.modeling import tokens\n", encoding="utf-8")
    targets = imported_modules(source, {"competition.modeling", "competition.modeling.tokens"})
    assert targets == {"competition.modeling.tokens"} and core_layer("competition.modeling.tokens") > core_layer(
        "competition.rules.data")
    assert "torch" in imported_libraries(source) & TORCH_LIBRARIES


def test_error_types_are_imported_from_their_module() -> None:
    """Other modules use the error types; importing them from there hides the owner."""
    elsewhere = sorted(
        f"{path.relative_to(PROJECT_ROOT)}:{node.lineno} from {node.module}"
        for path in python_files((*PACKAGES, "tests", "benchmarks")) for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and node.module != ERRORS_MODULE
        and (node.module or "").split(".")[0] in PACKAGES and {alias.name for alias in node.names} & ERROR_NAMES)
    assert not elsewhere, f"import DataError/ConfigError/BAD_INPUT_EXIT_CODE from {ERRORS_MODULE}: {elsewhere}"
