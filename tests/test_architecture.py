"""The architecture rules that import-linter cannot state (its contracts, in pyproject.toml, hold
the layers and forbid import cycles; `make test` runs `lint-imports` before pytest):

- no module imports a private name (`_x`: a function, a class, a private module) of another
  package or top-level module: `subcircuit.methods.acdc.fast` may use `subcircuit.methods.base._y`
  (same package, `subcircuit.methods`), but not `subcircuit.patching._fast` or
  `subcircuit.models.transformer._z`. What another package needs is made public there;
- no module in src/ is over `MAX_LINES` lines (a module that grows past it holds two things);
- no `torch.set_grad_enabled(...)` run at import time, in src/, tests/, scripts/ or benchmarks/
  (global grad mode would make what a test exercises depend on which files pytest collected);
- no `method == "acdc"` outside `subcircuit.methods.acdc`: what differs between methods is
  declared on the method's spec in the registry.

Checked on the source text with `ast`, so nothing is imported. Tests are exempt from the
private-name rule (they test private functions on purpose).

`PENDING_*` list the modules that break a rule today because issue 16 is still moving them (other
branches split and move those files). Each check fails when a listed module already keeps the
rule, so the lists shrink to empty as the moves land and cannot go stale.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = "subcircuit"
MAX_LINES = 400

# modules over MAX_LINES today, being split by other branches of issue 16
PENDING_LONG: set[str] = set()
# modules that import another package's private names today (being moved by other branches)
PENDING_PRIVATE: set[str] = set()
# benchmark scripts that switch autograd off globally at import today
PENDING_GRAD_MODE: set[str] = set()
# modules that branch on `method == "acdc"` today (ACDC moves behind the registry)
PENDING_ACDC_BRANCH: set[str] = set()


def source_files(under: Path) -> list[Path]:
    return sorted(p for p in under.rglob("*.py") if "__pycache__" not in p.parts)


def module_name(path: Path, root: Path = SRC) -> str:
    """src/subcircuit/a/b.py -> subcircuit.a.b; a package's __init__.py -> the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def rel(path: Path) -> str:
    return path.relative_to(SRC).as_posix() if path.is_relative_to(SRC) else path.relative_to(ROOT).as_posix()


def unit(dotted: str) -> str:
    """The package (or top-level module) of subcircuit that a dotted name belongs to: privates may
    be shared inside one unit. subcircuit.methods.acdc.fast -> subcircuit.methods."""
    return ".".join(dotted.split(".")[:2])


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_across(importer: str, target: str) -> bool:
    """Whether dotted `target` (a module, or a module's attribute) is a private name of a unit of
    subcircuit other than `importer`'s."""
    parts = target.split(".")
    if parts[0] != PACKAGE or unit(target) == unit(importer):
        return False
    return any(is_private(p) for p in parts[1:])


def _resolve_from(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module of `from <module> import ...` (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def private_imports(tree: ast.AST, importer: str, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of every private name of another unit of subcircuit that `tree` (the
    source of module `importer`) imports: `from X import _y`, `import X._y`, `from X._y import z`,
    and attribute access `X._y` on a name bound to a subcircuit module by an import."""
    bound: dict[str, str] = {}  # local name -> the dotted name it was imported as
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if _private_across(importer, a.name):
                    yield node.lineno, a.name
                if a.asname:
                    bound[a.asname] = a.name
                else:
                    bound[a.name.split(".")[0]] = a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            module = _resolve_from(importer, is_package, node)
            for a in node.names:
                target = f"{module}.{a.name}"
                if a.name != "*" and _private_across(importer, target):
                    yield node.lineno, target
                bound[a.asname or a.name] = target
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_private(node.attr):
            chain, value = [node.attr], node.value
            while isinstance(value, ast.Attribute):
                chain.append(value.attr)
                value = value.value
            if isinstance(value, ast.Name) and value.id in bound:
                target = ".".join([bound[value.id], *reversed(chain)])
                if _private_across(importer, target):
                    yield node.lineno, target


def import_time_calls(tree: ast.Module, dotted: str) -> Iterator[int]:
    """Lines of calls to `dotted` (e.g. torch.set_grad_enabled) that run when the module is
    imported: at module level, in class bodies and in module-level if/try/with blocks, not inside
    a function (decorators and default values, which run at import, count too)."""

    def calls(node: ast.AST) -> Iterator[int]:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            for d in getattr(node, "decorator_list", []):
                yield from calls(d)
            for d in [*node.args.defaults, *(x for x in node.args.kw_defaults if x is not None)]:
                yield from calls(d)
            return
        if isinstance(node, ast.Call) and ast.unparse(node.func) in (dotted, dotted.rsplit(".", 1)[-1]):
            yield node.lineno
        for child in ast.iter_child_nodes(node):
            yield from calls(child)

    yield from calls(tree)


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _check_pending(found: set[str], pending: set[str], rule: str, details: dict[str, str]) -> None:
    new = sorted(found - pending)
    fixed = sorted(pending - found)
    assert not new, f"{rule}:\n" + "\n".join(f"  {m}: {details[m]}" for m in new)
    assert not fixed, f"these modules keep the rule now ({rule}); remove them from the PENDING list: {fixed}"


# ------------------------------------------------------------------------------ the rules


def test_no_private_names_across_packages():
    found: dict[str, str] = {}
    for path in source_files(SRC / PACKAGE):
        hits = list(private_imports(_parse(path), module_name(path), path.name == "__init__.py"))
        if hits:
            found[rel(path)] = ", ".join(f"l.{line} {name}" for line, name in sorted(hits))
    _check_pending(set(found), PENDING_PRIVATE, "private names of another package imported (make them public there)",
                   found)


def test_no_module_over_the_line_limit():
    sizes = {rel(p): len(p.read_text(encoding="utf-8").splitlines()) for p in source_files(SRC / PACKAGE)}
    largest = sorted(sizes.items(), key=lambda kv: -kv[1])[:12]
    table = "\n".join(f"  {n:5d}  {m}{'  (over)' if n > MAX_LINES else ''}" for m, n in largest)
    print(f"largest modules in src/ (limit {MAX_LINES} lines):\n{table}")
    over = {m for m, n in sizes.items() if n > MAX_LINES}
    _check_pending(over, PENDING_LONG, f"modules over {MAX_LINES} lines (split them)\nlargest:\n{table}\nover",
                   {m: f"{sizes[m]} lines" for m in sizes})


def test_no_grad_mode_set_at_import():
    found: dict[str, str] = {}
    for folder in (SRC / PACKAGE, ROOT / "tests", ROOT / "scripts", ROOT / "benchmarks"):
        for path in source_files(folder):
            lines = list(import_time_calls(_parse(path), "torch.set_grad_enabled"))
            if lines:
                found[rel(path)] = "lines " + ", ".join(map(str, lines))
    _check_pending(set(found), PENDING_GRAD_MODE, "torch.set_grad_enabled runs at import time (the patching entry "
                   "points choose their grad mode; use torch.no_grad() where it is needed)", found)


def _acdc_branches(tree: ast.AST) -> list[int]:
    """Lines comparing something with the string "acdc" (== / != / in)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            values = [node.left, *node.comparators]
            if any(isinstance(v, ast.Constant) and v.value == "acdc" for v in values):
                lines.append(node.lineno)
    return sorted(lines)


def test_no_acdc_branch_outside_its_package():
    found = {}
    for path in source_files(SRC / PACKAGE):
        if module_name(path).startswith(f"{PACKAGE}.methods.acdc"):
            continue
        lines = _acdc_branches(_parse(path))
        if lines:
            found[rel(path)] = "lines " + ", ".join(map(str, lines))
    _check_pending(set(found), PENDING_ACDC_BRANCH, 'method == "acdc" outside methods/acdc/ (declare it on the '
                   "method's spec instead)", found)


# ------------------------------------------------------------------------------ the checkers themselves


@pytest.mark.parametrize(
    ("importer", "is_package", "code", "expected"),
    [
        ("subcircuit.runs.sweep", False, "from subcircuit.discover import _trace_path", ["subcircuit.discover._trace_path"]),
        ("subcircuit.runs.sweep", False, "from subcircuit.patching._fast import run_fast", ["subcircuit.patching._fast.run_fast"]),
        ("subcircuit.runs.sweep", False, "import subcircuit.patching._fast as f", ["subcircuit.patching._fast"]),
        ("subcircuit.runs.sweep", False, "import subcircuit.graph as g\ng._parse(1)", ["subcircuit.graph._parse"]),
        ("subcircuit.runs.sweep", False, "import subcircuit\nsubcircuit.graph._parse(1)", ["subcircuit.graph._parse"]),
        ("subcircuit.runs.sweep", False, "from subcircuit import patching\npatching._fast.x", ["subcircuit.patching._fast"]),
        ("subcircuit.methods.acdc", True, "from .. import _helpers", []),  # subcircuit.methods._helpers: same unit
        ("subcircuit.methods.acdc.fast", False, "from ...patching import _fast", ["subcircuit.patching._fast"]),
        ("subcircuit.methods.acdc.fast", False, "from subcircuit.methods.base import _no_progress", []),
        ("subcircuit.patching.patcher", False, "from subcircuit.patching._fast import run_fast", []),
        ("subcircuit.patching", True, "from ._memo import Memo", []),
        ("subcircuit.cli", False, "from subcircuit import __version__\nimport torch\ntorch._C", []),
        ("subcircuit.cli", False, "from subcircuit.graph import Graph\nGraph._cache", ["subcircuit.graph.Graph._cache"]),
        ("subcircuit.cli", False, "x = obj._private", []),
    ],
)
def test_private_name_checker(importer, is_package, code, expected):
    assert [name for _, name in private_imports(ast.parse(code), importer, is_package)] == expected


def test_import_time_checker():
    code = (
        "import torch\n"
        "torch.set_grad_enabled(False)\n"
        "if True:\n    torch.set_grad_enabled(False)\n"
        "def f(x=torch.set_grad_enabled(False)):\n    torch.set_grad_enabled(True)\n"
        "class C:\n    torch.set_grad_enabled(False)\n    def g(self):\n        torch.set_grad_enabled(False)\n"
    )
    assert list(import_time_calls(ast.parse(code), "torch.set_grad_enabled")) == [2, 4, 5, 8]
