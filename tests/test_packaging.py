"""The distribution: the wheel is the engine with two dependencies, the server is an extra,
``import ogcache.cache`` needs none of the server's packages, and the console script says
which extra it needs. Everything here runs offline, in subprocesses where imports are blocked."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import ogcache
from ogcache.entry import SERVER_EXTRA_HINT
from tests.support.wheel import build_wheel

ROOT = Path(__file__).resolve().parent.parent

ENGINE = {"redis", "orjson"}
# What the agent backend needs and the engine must never import.
SERVER_ONLY = (
    "fastapi",
    "sqlalchemy",
    "uvicorn",
    "typer",
    "rich",
    "pydantic",
    "pydantic_settings",
    "httpx",
    "prometheus_client",
    "alembic",
    "asyncpg",
    "jwt",
)

# Prepended to each subprocess's script: a meta-path finder that fails the import of every
# top-level module in BLOCKED, as if it were not installed.
BLOCKER = """
import sys
from importlib.abc import MetaPathFinder

class Blocker(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None

sys.meta_path.insert(0, Blocker())
"""


def run_blocked(
    blocked: tuple[str, ...], script: str, argv: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    source = f"BLOCKED = {set(blocked)!r}\n{BLOCKER}\nsys.argv = ['ogcache', *{list(argv)!r}]\n"
    return subprocess.run(
        [sys.executable, "-c", source + textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def metadata(tmp_path_factory: pytest.TempPathFactory) -> Message:
    """The METADATA of a wheel built from the repository (hatchling in-process: no network)."""
    out = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(out)
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = next(
            name.rsplit("/", 1)[0] for name in names if name.endswith(".dist-info/METADATA")
        )
        assert f"{info}/licenses/LICENSE" in names
        assert "ogcache/cache/__init__.py" in names
        assert not [name for name in names if name.startswith(("tests/", "bench/"))]
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
        assert "ogcache = ogcache.entry:main" in entry_points
        return Parser().parsestr(archive.read(f"{info}/METADATA").decode())


def requirements(metadata: Message, extra: str | None) -> set[str]:
    """Names the wheel requires with ``extra`` (None: without any extra)."""
    found = set()
    for line in metadata.get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        marker = requirement.marker
        if extra is None:
            wanted = marker is None
        else:
            wanted = marker is not None and marker.evaluate({"extra": extra})
        if wanted:
            found.add(requirement.name)
    return found


def test_the_wheel_requires_only_the_engine(metadata: Message) -> None:
    assert metadata["Name"] == "ogcache"
    assert metadata["Version"] == ogcache.__version__
    assert metadata["License-Expression"] == "MIT"
    assert requirements(metadata, None) == ENGINE
    assert "redis[hiredis]" in "".join(metadata.get_all("Requires-Dist") or []).replace(" ", "")
    assert metadata["Project-URL"] is not None
    assert any(c.startswith("Programming Language") for c in metadata.get_all("Classifier") or [])


def test_the_server_extra_brings_the_service(metadata: Message) -> None:
    server = requirements(metadata, "server")
    for name in ("fastapi", "sqlalchemy", "uvicorn", "typer", "rich", "alembic", "asyncpg"):
        assert name in server
    for name in ("pydantic", "httpx", "prometheus-client"):  # via ogcache[pydantic,...]
        assert name in server
    assert requirements(metadata, "pydantic") == {"pydantic"}
    assert requirements(metadata, "prometheus") == {"prometheus-client"}
    assert requirements(metadata, "cluster") == {"redis"}


def test_the_engine_imports_and_caches_without_the_server_packages() -> None:
    result = run_blocked(
        SERVER_ONLY,
        """
        import asyncio
        from ogcache.cache import Cache, Namespace, create_backend

        async def main():
            cache = Cache(create_backend("memory://"), prefix="lean")
            names = Namespace("n", ttl=60)
            loads = []

            async def load():
                loads.append(1)
                return {"answer": 42}

            first = await cache.get_or_load(names, names.key("k"), load)
            second = await cache.get_or_load(names, names.key("k"), load)
            assert first == second == {"answer": 42} and loads == [1], (first, second, loads)

            @cache.cached(names, key="user:{user_id}")
            async def user(user_id: int) -> dict:
                loads.append(user_id)
                return {"id": user_id}

            assert [await user(7), await user(7)] == [{"id": 7}] * 2 and loads == [1, 7], loads
            await cache.close()

        asyncio.run(main())
        leaked = sorted(name for name in sys.modules if name.partition(".")[0] in BLOCKED)
        assert not leaked, leaked
        print("ok")
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_model_codec_without_pydantic_names_the_extra() -> None:
    result = run_blocked(
        ("pydantic", "pydantic_core"),
        """
        from ogcache.cache import JsonCodec, ModelCodec

        assert JsonCodec().loads(JsonCodec().dumps([1])) == [1]
        try:
            ModelCodec(int)
        except ModuleNotFoundError as exc:
            print(exc)
        """,
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'ogcache[pydantic]'" in result.stdout


def test_version_needs_none_of_the_server_packages() -> None:
    result = run_blocked(SERVER_ONLY, "from ogcache.entry import main; main()", ("--version",))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"ogcache {ogcache.__version__}\n"


def test_the_command_line_without_the_server_extra_names_it() -> None:
    result = run_blocked(("typer",), "from ogcache.entry import main; main()", ("--help",))
    assert result.returncode == 1
    assert result.stderr == SERVER_EXTRA_HINT + "\n"
    assert result.stdout == ""


def test_python_dash_m_and_the_console_script_print_the_version() -> None:
    script = Path(sys.executable).with_name("ogcache")
    for command in ([sys.executable, "-m", "ogcache", "--version"], [str(script), "--version"]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"ogcache {ogcache.__version__}\n"
