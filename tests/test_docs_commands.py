"""Issue 12: every ```bash block of the README, the Russian quick start and the library page
runs here, so a changed flag, route or Makefile target breaks the build.

Each block is one test. Each command line is either run for real or listed in
``NOT_RUNNABLE`` (keyed by a substring of the line) with the reason; a line that is neither
fails the test, so a new command must be classified. Run for real: ``make run`` (the
Makefile's own recipe, read from it, on a free port in a temporary directory), ``uvicorn
app:app`` (the library page's ``app.py``), and the ``curl``, ``export`` and ``ogcache`` lines,
as one ``bash -euo pipefail`` script whose ``curl`` fails on an HTTP status of 400 or more.
Lines not run are still checked where that is cheap: ``pip install`` names and extras against
pyproject.toml (or the installed distributions), ``ogcache``/``python -m bench`` flags against
their ``--help``.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from uuid import uuid4

import pytest

from tests.support.servers import free_port, port_open, stop_session

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DOCUMENTS = ("README.md", "docs/quick-start.ru.md", "docs/library.md")

# A substring of a command line -> why that line is not run here. The first match wins and
# is checked before the runnable kinds below.
NOT_RUNNABLE: dict[str, str] = {
    "pip install ": "installs from PyPI (no network here): names and extras checked instead",
    "make test": "runs the suite itself",
    ".supabase.co": "an example database host",
    "ogcache serve --host": "serves the example database exported above: flags checked instead",
    "redis-server --daemonize": "starts a Redis of its own: the suite's Redis serves instead",
    "python -m bench": "a benchmark: bench/ tests run it small (the subcommand's --help runs)",
}

MAKE_RUN = re.compile(r"make run(?: PORT=\d+)?")
UVICORN = "uvicorn app:app"
SCRIPTED = re.compile(r"(?:curl |export [A-Z_]+=|(?:\.venv/bin/)?ogcache )")
DOCUMENTED_PORT = re.compile(r"\b(?:127\.0\.0\.1|localhost):8000\b")

CURL = """
curl() {
  local status
  status=$(command curl -sS --max-time 30 -o "$DOCS_BODY" -w '%{http_code}' "$@")
  echo "curl $* -> HTTP $status: $(head -c 300 "$DOCS_BODY")"
  [ "$status" -lt 400 ]
}
"""


@dataclass(frozen=True)
class Block:
    document: str
    index: int
    lines: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{self.document}-{self.index}: {self.lines[0][:40]}"


@dataclass
class Plan:
    servers: list[str] = field(default_factory=list)
    script: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _blocks(document: str) -> list[Block]:
    """The ```bash blocks of ``document``: continuation lines joined, comments and blank
    lines dropped."""
    text = (ROOT / document).read_text()
    bodies = re.findall(r"^```bash\n(.*?)^```$", text, re.M | re.S)
    blocks = []
    for index, body in enumerate(bodies):
        joined = body.replace("\\\n", " ")
        lines = [re.sub(r"\s+#\s.*$", "", line).strip() for line in joined.splitlines()]
        blocks.append(Block(document, index, tuple(line for line in lines if line)))
    return blocks


BLOCKS = [block for document in DOCUMENTS for block in _blocks(document)]


def _plan(block: Block) -> Plan:
    plan = Plan()
    for line in block.lines:
        reason = next((why for key, why in NOT_RUNNABLE.items() if key in line), None)
        if reason is not None:
            plan.skipped.append((line, reason))
        elif MAKE_RUN.fullmatch(line) or line == UVICORN:
            plan.servers.append(line)
        elif SCRIPTED.match(line):
            plan.script.append(line)
        else:
            pytest.fail(f"{block.id}: {line!r} is neither run by this test nor in NOT_RUNNABLE")
    return plan


def _check_requirements(line: str) -> None:
    """``pip install`` arguments: ogcache's extras exist in pyproject.toml; any other name is
    installed here (``make install``) with the extras named."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for argument in shlex.split(line)[2:]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[([a-z0-9,_-]+)\])?", argument)
        assert match is not None, f"{argument!r} in {line!r}"
        name, extras = match.group(1), set(filter(None, (match.group(2) or "").split(",")))
        if name == declared["name"]:
            missing = extras - set(declared["optional-dependencies"])
        else:
            provided = importlib.metadata.distribution(name).metadata.get_all("Provides-Extra")
            missing = extras - set(provided or ())
        assert not missing, f"{line!r}: {name} has no extra {sorted(missing)}"


def _check_help(line: str) -> None:
    """The command's subcommands answer ``--help`` and list every ``--flag`` of the line."""
    words = shlex.split(line)
    if words[:3] == ["python", "-m", "bench"]:
        command = [sys.executable, "-m", "bench", words[3]]
    else:
        start = next(i for i, word in enumerate(words) if word.endswith("ogcache"))
        subcommands = [word for word in words[start + 1 :] if word.isidentifier()]
        command = [str(BIN / "ogcache"), *subcommands[:1]]
    environment = os.environ | {"NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb"}
    shown = subprocess.run(
        [*command, "--help"], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, f"{line!r}: {shown.stdout}{shown.stderr}"
    for flag in (word.split("=")[0] for word in words if word.startswith("--")):
        listed = re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", shown.stdout)
        assert listed, f"{line!r}: {flag} is not in {shlex.join(command)} --help"


def _check_skipped(line: str) -> None:
    if "pip install " in line:
        _check_requirements(line)
    elif "ogcache " in line or "python -m bench" in line:
        _check_help(line)


def _make_run_command(port: int) -> list[str]:
    """The Makefile's ``run`` recipe with its variables filled in: what ``make run`` runs,
    without the install step before it."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^run:.*\n\t(.+)$", makefile, re.M)
    assert recipe is not None, "the Makefile has no run target"
    defaults = dict(re.findall(r"^(\w+) \?= (.*)$", makefile, re.M))
    # The docs say http://127.0.0.1:8000; the port is the free one, PORT=... overrides it.
    assert (defaults.get("HOST"), defaults.get("PORT")) == ("127.0.0.1", "8000"), defaults
    filled = recipe.group(1).replace("$(BIN)", str(BIN)).replace("$(HOST)", defaults["HOST"])
    filled = filled.replace("$(PORT)", str(port))
    assert "$" not in filled, f"the run recipe has a variable this test does not know: {filled}"
    return shlex.split(filled)


def _shell_environment(directory: Path, redis_url: str) -> dict[str, str]:
    """A user's shell: no OGCACHE_* variable, the virtualenv first on PATH; the ``ogcache``
    lines share the suite's Redis under a key prefix of their own."""
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("OGCACHE_")
    }
    return environment | {
        "PATH": f"{BIN}{os.pathsep}{environment.get('PATH', '')}",
        "REDIS_URL": redis_url,
        "DOCS_BODY": str(directory / "curl-body"),
    }


@contextlib.contextmanager
def _server(command: list[str], directory: Path, port: int, redis_url: str) -> Iterator[None]:
    """``command`` in a session of its own in ``directory`` until it listens on ``port``."""
    log_path = directory / f"server-{port}.log"
    environment = _shell_environment(directory, redis_url)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=directory,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while not port_open("127.0.0.1", port, timeout=0.2):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{shlex.join(command)} did not listen:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield
    finally:
        stop_session(process)


def _library_app(directory: Path, redis_url: str) -> list[str]:
    """The library page's ``app.py`` (the python block after "Save this as `app.py`") in
    ``directory``, on the suite's Redis under a prefix of its own; ``uvicorn app:app``."""
    text = (ROOT / "docs/library.md").read_text()
    source = re.search(r"Save this as `app\.py`.*?^```python\n(.*?)^```$", text, re.M | re.S)
    assert source is not None, "docs/library.md no longer says what to save as app.py"
    code = source.group(1).replace('prefix="myapp"', f'prefix="test-{uuid4().hex[:12]}"')
    assert 'prefix="myapp"' in source.group(1), "app.py's cache prefix changed: update the test"
    code = code.replace('"redis://127.0.0.1:6379/0"', repr(redis_url))
    (directory / "app.py").write_text(code)
    return [str(BIN / "uvicorn"), "app:app"]


def _server_command(line: str, directory: Path, port: int, redis_url: str) -> list[str]:
    if line == UVICORN:
        return [*_library_app(directory, redis_url), "--host", "127.0.0.1", "--port", str(port)]
    return _make_run_command(port)


def _demo_tokens(directory: Path) -> dict[str, str]:
    """What the demo prints for the user: the admin token it keeps in .ogcache-demo.env, and
    a user token from ``ogcache token issue`` run in the same directory."""
    kept = dict(
        line.split("=", 1) for line in (directory / ".ogcache-demo.env").read_text().splitlines()
    )
    environment = {key: value for key, value in os.environ.items() if "OGCACHE_" not in key}
    issued = subprocess.run(
        [str(BIN / "ogcache"), "token", "issue", "--user", "web_demo_alice"],
        cwd=directory,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert issued.returncode == 0, issued.stderr
    admin = kept["OGCACHE_ADMIN_TOKEN"]
    return {
        "OGCACHE_ADMIN_TOKEN": admin,
        "ADMIN_TOKEN": admin,
        "USER_TOKEN": issued.stdout.strip(),
    }


def _run_script(plan: Plan, directory: Path, port: int, redis_url: str) -> None:
    """The block's scripted lines, the documented port rewritten to ``port``; with the demo's
    tokens in the environment when the block's server is the demo's."""
    lines = (DOCUMENTED_PORT.sub(f"127.0.0.1:{port}", line) for line in plan.script)
    # `export A=$(false)` succeeds (export's status): assign first, so `set -e` sees a failure.
    script = "\n".join(re.sub(r"^export (\w+)=(.*)$", r"\1=\2; export \1", line) for line in lines)
    environment = _shell_environment(directory, redis_url) | {
        "OGCACHE_REDIS_URL": redis_url,
        "OGCACHE_CACHE_PREFIX": f"test-{uuid4().hex[:12]}",
    }
    if plan.servers and plan.servers[-1] != UVICORN:
        environment |= _demo_tokens(directory)
    ran = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", CURL + script],
        cwd=directory,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, f"{script}\n--- output:\n{ran.stdout}\n{ran.stderr}"


def _require_tools(script: list[str]) -> None:
    for tool in ("curl", "openssl"):
        if any(tool in line for line in script) and shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_documented_commands_run(block: Block, tmp_path: Path, redis_url: str) -> None:
    plan = _plan(block)
    for line, _reason in plan.skipped:
        _check_skipped(line)
    if not plan.servers and not plan.script:
        pytest.skip("; ".join(f"{line!r}: {reason}" for line, reason in plan.skipped))
    _require_tools(plan.script)
    if any(line.startswith("curl ") for line in plan.script):
        plan.servers = plan.servers or ["make run"]  # the server the block's curls talk to
    if not plan.servers:
        _run_script(plan, tmp_path, free_port(), redis_url)  # exports and CLI lines only
    for number, line in enumerate(plan.servers, start=1):
        port = free_port()
        command = _server_command(line, tmp_path, port, redis_url)
        with _server(command, tmp_path, port, redis_url):
            if number == len(plan.servers) and plan.script:
                _run_script(plan, tmp_path, port, redis_url)
