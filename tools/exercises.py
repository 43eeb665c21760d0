"""Each chapter's exercise stubs, and the link from each stub to its reference solution in `tests/`.

A stub is what a chapter hands the student: a function whose body is only `raise NotImplementedError`, or an
answer `name = None`, followed in the same cell by a check call `chNN.check_xxx(name)`. The reference solutions
live in `tests/test_checks_chNN.py` (a file may cover several chapters: `test_checks_ch00_02.py`), never in a
notebook, and the tests prove each check accepts its reference.

The link from a stub to its reference is a naming rule with a table of exceptions:
- the rule: stub `my_cosine_factor` (or `cosine_factor`) of chapter 07 is solved by the function
  `cosine_factor` in a test file covering chapter 07; an answer `initial_loss = None` by the constant
  `INITIAL_LOSS` (or `initial_loss`). Exactly one definition must match;
- `SOLUTIONS` names the reference where the rule does not apply.
`python -m tools.exercises` lists every stub and its solution, and fails (as tests/test_classroom.py does) when a
stub has none, or a `SOLUTIONS` entry names a stub that no longer exists.

The solved copies (`tools.solved_copies`) and the nbgrader release (`tools.nbgrader_release`) read the reference's
source from the test file (with the imports and helper functions it needs), rename it to the stub's name, and put
it where the stub was: no second copy of any solution exists in the repository.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
TESTS = ROOT / "tests"

# The exceptions to the naming rule: chapter number -> {the name a stub defines: "test file::reference name"}.
SOLUTIONS = {
    "10": {"predicted": "test_checks_ch10.py::NODE_COUNTS"},  # the answer is named for what the student does
}


class MissingSolution(LookupError):
    """A stub with no entry in SOLUTIONS, or an entry naming something the test file does not define."""


@dataclass(frozen=True)
class Stub:
    """One exercise stub: `name` is defined by lines first..last (1-based) of code cell `cell_index`."""

    notebook: Path
    cell_index: int
    name: str
    kind: str  # "function" (body only raises NotImplementedError) or "value" (name = None)
    first: int
    last: int
    check: str | None  # "ch07.check_cosine_factor", the call that grades it, None if the cell has none

    @property
    def chapter(self) -> str:
        return self.notebook.name[:2]

    def where(self) -> str:
        return f"{self.notebook.name}, cell {self.cell_index}, {self.name}"


def chapter_notebooks(folder: Path = NOTEBOOKS) -> list[Path]:
    """Every chapter notebook in `folder`, in course order (00_... to 10_...)."""
    return sorted(Path(folder).glob("[0-9][0-9]_*.ipynb"))


def parse_cell(source: str) -> ast.Module | None:
    """The cell's Python syntax tree, or None for a cell that is not plain Python (a magic, a shell line)."""
    try:
        return ast.parse(source)
    except SyntaxError:
        return None


def _raises_not_implemented(function: ast.FunctionDef) -> bool:
    body = [s for s in function.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    if len(body) != 1 or not isinstance(body[0], ast.Raise) or body[0].exc is None:
        return False
    exc = body[0].exc.func if isinstance(body[0].exc, ast.Call) else body[0].exc
    return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"


def _check_calls(tree: ast.Module) -> dict[str, str]:
    """{answer name: "chNN.check_xxx"} for every call `chNN.check_xxx(answer)` anywhere in the cell."""
    calls = {}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and re.fullmatch(r"ch\d\d", node.func.value.id)
                and node.func.attr.startswith("check_") and node.args and isinstance(node.args[0], ast.Name)):
            calls[node.args[0].id] = f"{node.func.value.id}.{node.func.attr}"
    return calls


def stubs_in_cell(source: str, notebook: Path, cell_index: int) -> list[Stub]:
    """The stubs one code cell defines at its top level (see the module docstring for what counts)."""
    tree = parse_cell(source)
    if tree is None:
        if "NotImplementedError" in source:  # a stub we cannot read must not be skipped silently
            raise SyntaxError(f"{notebook.name}, cell {cell_index}: a cell with a stub must be plain Python")
        return []
    checks = _check_calls(tree)
    stubs = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and _raises_not_implemented(node):
            name, kind = node.name, "function"
        elif (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
              and isinstance(node.value, ast.Constant) and node.value.value is None
              and node.targets[0].id in checks):
            name, kind = node.targets[0].id, "value"
        else:
            continue
        stubs.append(Stub(notebook, cell_index, name, kind, node.lineno, node.end_lineno, checks.get(name)))
    return stubs


def find_stubs(path: Path) -> list[Stub]:
    """Every exercise stub of one chapter notebook, in cell order."""
    notebook = nbformat.read(path, as_version=4)
    return [stub for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"
            for stub in stubs_in_cell(cell.source, Path(path), index)]


# ---------------------------------------------------------------------------------------------------------
# The reference solutions, read from the test files


@lru_cache(maxsize=None)
def _test_module(file_name: str) -> tuple[str, ast.Module]:
    path = TESTS / file_name
    if not path.is_file():
        raise MissingSolution(f"no test file {path}")
    source = path.read_text()
    return source, ast.parse(source)


def chapter_test_files(chapter: str) -> list[Path]:
    """The test files holding a chapter's reference solutions: test_checks_ch07.py, test_checks_ch05_06.py..."""
    files = []
    for path in sorted(TESTS.glob("test_checks_ch*.py")):
        numbers = re.fullmatch(r"test_checks_ch(\d\d)(?:_(\d\d))?\.py", path.name)
        if numbers and int(numbers[1]) <= int(chapter) <= int(numbers[2] or numbers[1]):
            files.append(path)
    return files


def reference_of(stub: Stub) -> tuple[str, str]:
    """(test file name, reference name) for a stub, by `SOLUTIONS` or else the naming rule (module docstring);
    MissingSolution, saying what to add, when there is none or more than one."""
    entry = SOLUTIONS.get(stub.chapter, {}).get(stub.name)
    if entry is not None:
        file_name, name = entry.split("::")
        return file_name, name
    base = stub.name.removeprefix("my_")
    wanted = [base] if stub.kind == "function" else [base.upper(), base]
    found = [(path.name, name) for path in chapter_test_files(stub.chapter) for name in wanted
             if name in _definitions(_test_module(path.name)[1])]
    if len(found) == 1:
        return found[0]
    files = ", ".join(path.name for path in chapter_test_files(stub.chapter)) or f"no test_checks_ch{stub.chapter}*.py"
    problem = "no reference solution" if not found else f"more than one reference solution {found}"
    raise MissingSolution(
        f"{stub.where()}: {problem}. Define {' or '.join(wanted)} (once) in the chapter's test file ({files}), with "
        f"a test that {stub.check or 'its check'} accepts it, or name the reference in SOLUTIONS['{stub.chapter}'] "
        f"in tools/exercises.py")


def _definitions(tree: ast.Module) -> dict[str, ast.stmt]:
    """The test module's top-level functions and constants, by name."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            found[node.name] = node
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            found[node.targets[0].id] = node
    return found


def _imports(tree: ast.Module) -> dict[str, str]:
    """{name bound at the test module's top level by an import: the import statement that binds only it}."""
    bound = {}
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                name = alias.asname or alias.name.split(".")[0]
                single = ast.Import([alias]) if isinstance(node, ast.Import) else ast.ImportFrom(
                    node.module, [alias], node.level)
                bound[name] = ast.unparse(single)
    return bound


def _names_read(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _source_with_comments_above(source: str, node: ast.stmt) -> list[str]:
    """The node's source lines, with the comment lines directly above it (they explain the solution)."""
    lines = source.splitlines()
    start = node.lineno - 1
    while start > 0 and lines[start - 1].lstrip().startswith("#"):
        start -= 1
    return lines[start:node.end_lineno]


@dataclass(frozen=True)
class Solution:
    """A stub's reference solution, read from the test file, in the pieces the copies put together."""

    file_name: str
    name: str  # its name in the test file
    imports: list[str]  # the import statements it needs (one name each)
    helpers: list[str]  # the source lines of the test file's helper functions it calls
    definition: list[str]  # its source, with the comment lines above it, renamed to the stub's name
    body: list[str]  # a function's body lines, indented as in the test file ([] for a value)

    def header(self) -> str:
        return f"# reference solution, from tests/{self.file_name} ({self.name})"


def solution_of(stub: Stub, already_imported: set[str] = frozenset()) -> Solution:
    """The reference solution of a stub, with the imports (except those in `already_imported`) and the helper
    functions it needs; MissingSolution when the test file does not define it."""
    file_name, name = reference_of(stub)
    source, tree = _test_module(file_name)
    definitions, imports = _definitions(tree), _imports(tree)
    reference = definitions.get(name)
    wanted = ast.FunctionDef if stub.kind == "function" else ast.Assign
    if not isinstance(reference, wanted):
        raise MissingSolution(f"{stub.where()}: tests/{file_name} defines no {stub.kind} {name!r}")

    helpers, needed_imports, todo, seen = [], set(), [reference], {name}
    while todo:  # follow the names the reference reads to the test module's imports and helper functions
        for used in sorted(_names_read(todo.pop())):
            if used in imports and used not in already_imported:
                needed_imports.add(imports[used])
            elif used in definitions and used not in seen and not hasattr(builtins, used):
                seen.add(used)
                helpers.append(definitions[used])
                todo.append(definitions[used])
    helper_lines = []
    for helper in sorted(helpers, key=lambda node: node.lineno):  # in the test file's order
        helper_lines += _source_with_comments_above(source, helper) + ["", ""]

    definition = _source_with_comments_above(source, reference)
    pattern = rf"^(\s*def\s+){name}\b" if stub.kind == "function" else rf"^(\s*){name}(?=\s*=)"
    first_code = next(i for i, line in enumerate(definition) if not line.lstrip().startswith("#"))
    definition[first_code] = re.sub(pattern, lambda match: match.group(1) + stub.name, definition[first_code],
                                    count=1)
    body = []
    if stub.kind == "function":
        lines = source.splitlines()
        start = reference.body[0].lineno - 1
        while lines[start - 1].lstrip().startswith("#"):  # comments opening the body belong to it
            start -= 1
        body = lines[start:reference.end_lineno]
    return Solution(file_name, name, sorted(needed_imports), helper_lines, definition, body)


def solution_lines(stub: Stub, already_imported: set[str] = frozenset()) -> list[str]:
    """The code that replaces the stub in a solved copy: where it comes from, the imports and helper functions
    the reference needs (except imports the notebook already has), then the reference, renamed to the stub's name."""
    solution = solution_of(stub, already_imported)
    imports = solution.imports + (["", ""] if solution.imports else [])
    return [solution.header()] + imports + solution.helpers + solution.definition


def imported_names(sources: list[str]) -> set[str]:
    """Names bound by top-level imports in these cells (what a solution need not import again)."""
    names = set()
    for source in sources:
        tree = parse_cell(source)
        for node in tree.body if tree else []:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names.update(alias.asname or alias.name.split(".")[0] for alias in node.names)
    return names


def solved_source(cell_source: str, stubs: list[Stub], already_imported: set[str]) -> str:
    """The cell with each of its stubs replaced by its reference solution."""
    lines = cell_source.splitlines()
    for stub in sorted(stubs, key=lambda s: s.first, reverse=True):  # bottom up: line numbers stay valid
        lines[stub.first - 1:stub.last] = solution_lines(stub, already_imported)
    return "\n".join(lines)


def unmatched_solutions(stubs: list[Stub]) -> list[str]:
    """SOLUTIONS entries that no stub uses any more (a renamed or removed exercise)."""
    used = {(stub.chapter, stub.name) for stub in stubs}
    return [f"SOLUTIONS['{chapter}']['{name}']" for chapter, names in SOLUTIONS.items() for name in names
            if (chapter, name) not in used]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="List every exercise stub and its reference solution.")
    parser.add_argument("--notebooks", type=Path, default=NOTEBOOKS, help="folder of the chapters")
    args = parser.parse_args(argv)
    stubs, problems = [], []
    for path in chapter_notebooks(args.notebooks):
        for stub in find_stubs(path):
            stubs.append(stub)
            try:
                solution = "::".join(reference_of(stub))
            except MissingSolution as missing:
                problems.append(str(missing))
                continue
            print(f"{stub.where():<55} {stub.check or '(no check call)':<34} {solution}")
    problems += [f"{entry}: no such stub in the notebooks" for entry in unmatched_solutions(stubs)]
    for problem in problems:
        print("ERROR:", problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
