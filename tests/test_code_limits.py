"""Size limits on the source, read with ``ast``: a reader takes in one function at a time.

The cache engine's modules stay under 450 lines; no function or method in ``src/`` is over
60 lines (def to end, decorators aside) or takes more than 6 parameters besides
``self``/``cls``. Nested functions count like any other. CLI commands and HTTP routes may
take more parameters: theirs are their options. Exemptions are listed below by path and
function, each with its reason.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
CACHE_PACKAGE = SRC / "ogcache" / "cache"
CLI_MODULE = SRC / "ogcache" / "cli.py"

MAX_CACHE_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60
MAX_PARAMETERS = 6

# (path relative to the repository, qualified name) -> why it may be longer. Empty: the demo
# data is module-level data (src/ogcache/db/demo_data.py), not functions, and the code that
# loads or runs it (db/seed.py, demo.py) is logic, held to the same limit as the rest.
LENGTH_EXEMPT: dict[tuple[str, str], str] = {}

HTTP_METHODS = frozenset({"get", "post", "put", "patch", "delete", "head", "options", "api_route"})
ROUTER_FACTORIES = frozenset({"APIRouter", "FastAPI"})


@dataclass(frozen=True, slots=True)
class Function:
    path: str
    line: int
    name: str
    lines: int
    parameters: int
    takes_options: bool  # a CLI command or an HTTP route: its parameters are its options

    def where(self) -> str:
        return f"{self.path}:{self.line} {self.name}"


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def source_files() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def called_name(node: ast.expr) -> str | None:
    """``APIRouter`` for ``APIRouter(...)`` and ``typer.Typer`` for ``typer.Typer(...)``."""
    if not isinstance(node, ast.Call):
        return None
    return ast.unparse(node.func)


def objects_made_by(tree: ast.Module, factories: frozenset[str]) -> set[str]:
    """Names bound at module level to a call of one of ``factories`` (a router, a Typer app)."""
    names: set[str] = set()
    for statement in tree.body:
        if isinstance(statement, ast.Assign):
            targets, value = statement.targets, statement.value
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            targets, value = [statement.target], statement.value
        else:
            continue
        if called_name(value) in factories:
            names.update(target.id for target in targets if isinstance(target, ast.Name))
    return names


def is_decorated_by(
    function: ast.FunctionDef | ast.AsyncFunctionDef, owners: set[str], methods: frozenset[str]
) -> bool:
    """Whether a decorator is ``owner.method(...)`` or ``owner.method`` for one of ``owners``."""
    for decorator in function.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if (
            isinstance(target, ast.Attribute)
            and target.attr in methods
            and isinstance(target.value, ast.Name)
            and target.value.id in owners
        ):
            return True
    return False


def parameter_count(function: ast.FunctionDef | ast.AsyncFunctionDef, *, method: bool) -> int:
    """Every parameter (positional, keyword-only, ``*args``, ``**kwargs``) but a method's
    ``self`` or ``cls``."""
    arguments = function.args
    positional = [*arguments.posonlyargs, *arguments.args]
    if method and positional and positional[0].arg in ("self", "cls"):
        positional = positional[1:]
    variadic = [arg for arg in (arguments.vararg, arguments.kwarg) if arg is not None]
    return len(positional) + len(arguments.kwonlyargs) + len(variadic)


def functions_in(path: Path) -> Iterator[Function]:
    """Every function and method of a module, nested ones included, by qualified name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    routers = objects_made_by(tree, ROUTER_FACTORIES)
    typer_apps = (
        objects_made_by(tree, frozenset({"typer.Typer", "Typer"})) if path == CLI_MODULE else set()
    )

    def visit(node: ast.AST, scope: tuple[str, ...]) -> Iterator[Function]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                yield from visit(child, (*scope, child.name))
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                assert child.end_lineno is not None
                yield Function(
                    path=relative(path),
                    line=child.lineno,
                    name=".".join((*scope, child.name)),
                    lines=child.end_lineno - child.lineno + 1,
                    parameters=parameter_count(child, method=isinstance(node, ast.ClassDef)),
                    takes_options=is_decorated_by(child, routers, HTTP_METHODS)
                    or is_decorated_by(child, typer_apps, frozenset({"command"})),
                )
                yield from visit(child, (*scope, child.name))
            else:
                yield from visit(child, scope)

    yield from visit(tree, ())


def all_functions() -> list[Function]:
    return [function for path in source_files() for function in functions_in(path)]


def fail_listing(title: str, offenders: list[str]) -> None:
    """Fail with every offender on its own line, not just the first."""
    if offenders:
        pytest.fail(f"{title} ({len(offenders)}):\n  " + "\n  ".join(offenders), pytrace=False)


def test_cache_modules_are_at_most_450_lines() -> None:
    offenders = [
        f"{relative(path)}: {lines} lines"
        for path in sorted(CACHE_PACKAGE.rglob("*.py"))
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_CACHE_MODULE_LINES
    ]
    fail_listing(f"modules of the cache engine over {MAX_CACHE_MODULE_LINES} lines", offenders)


def test_functions_are_at_most_60_lines() -> None:
    offenders = [
        f"{function.where()}: {function.lines} lines"
        for function in all_functions()
        if function.lines > MAX_FUNCTION_LINES
        and (function.path, function.name) not in LENGTH_EXEMPT
    ]
    fail_listing(f"functions over {MAX_FUNCTION_LINES} lines", offenders)


def test_functions_take_at_most_6_parameters() -> None:
    offenders = [
        f"{function.where()}: {function.parameters} parameters"
        for function in all_functions()
        if function.parameters > MAX_PARAMETERS and not function.takes_options
    ]
    fail_listing(
        f"functions with more than {MAX_PARAMETERS} parameters besides self/cls "
        "(CLI commands and HTTP routes aside)",
        offenders,
    )


def test_every_length_exemption_is_still_needed() -> None:
    """An exemption for a function that is gone or now short would hide the next long one."""
    long_ones = {
        (function.path, function.name)
        for function in all_functions()
        if function.lines > MAX_FUNCTION_LINES
    }
    stale = sorted(
        f"{path} {name}" for path, name in LENGTH_EXEMPT if (path, name) not in long_ones
    )
    fail_listing("length exemptions that no longer apply", stale)


def test_the_scan_finds_commands_and_routes() -> None:
    """The option-taking exception must recognise the real decorators, or it exempts nothing."""
    functions = {(function.path, function.name): function for function in all_functions()}
    assert functions["src/ogcache/cli.py", "serve"].takes_options
    assert functions["src/ogcache/api/routes/cache.py", "cache_action"].takes_options
    assert not functions["src/ogcache/api/routes/cache.py", "report_json"].takes_options
    assert functions["src/ogcache/api/metrics.py", "CacheCollector.collect"].parameters == 0
