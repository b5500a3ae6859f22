"""The package's layout is its architecture: imports run downward, floor by floor.

Every `import` in studylib, including those inside functions, is read with `ast` (nothing is
imported), so a cycle cannot hide in a function body.
"""

import ast
import graphlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "studylib"

# Bottom to top. A module may import its own floor and the floors below it, never above.
# Floor 0 is the package's top-level modules (errors, outputs, results, training, machine).
FLOORS = ("", "models", "testbed", "compress", "evaluation", "analysis", "harness", "study",
          "chapters", "cli")
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path) -> set[str]:
    """The studylib modules `path` imports (a `from pkg import name` names pkg.name when
    that is a module, else pkg)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("studylib")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("studylib"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in MODULES else node.module)
    return found - {module_name(path)}


GRAPH = {name: imports(path) for name, path in MODULES.items()}


def floor(module: str) -> int:
    parts = module.split(".")
    return FLOORS.index(parts[1]) if len(parts) > 1 and parts[1] in FLOORS else 0


def test_every_import_names_a_module_of_the_package():
    unknown = {(m, i) for m, deps in GRAPH.items() for i in deps if i not in MODULES}
    assert not unknown


def test_the_import_graph_has_no_cycle():
    graphlib.TopologicalSorter(GRAPH).prepare()  # raises CycleError naming the cycle


def test_nothing_below_the_cli_imports_it():
    upward = {(m, i) for m, deps in GRAPH.items() if not m.startswith("studylib.cli")
              for i in deps if i.startswith("studylib.cli")}
    assert not upward


def test_imports_run_downward_floor_by_floor():
    upward = sorted(f"{m} (floor {FLOORS[floor(m)] or 'top'}) imports {i} "
                    f"(floor {FLOORS[floor(i)] or 'top'})"
                    for m, deps in GRAPH.items() for i in deps if floor(i) > floor(m))
    assert not upward, "\n".join(upward)


def test_every_module_fits_on_a_few_screens():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these modules (over {MAX_LINES} lines): {long}"


def test_test_modules_have_unique_names():
    """tests/ has no __init__.py: pytest imports each test module by its basename, so two of
    one name fail to collect (tests/cli/test_machine.py once clashed with tests/test_machine.py,
    and chapter 08's test_resources.py before it)."""
    tests = Path(__file__).resolve().parent
    seen: dict[str, list[str]] = {}
    for p in tests.rglob("test_*.py"):
        seen.setdefault(p.name, []).append(str(p.relative_to(tests)))
    assert not {n: ps for n, ps in seen.items() if len(ps) > 1}
