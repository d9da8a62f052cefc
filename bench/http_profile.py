"""Where a cached request's time goes: py-spy on the running service under wrk.

``python -m bench http-profile`` (:func:`run_profile`): the real service, started as
``bench/http_load.py`` starts it (its helpers: a fresh migrated database with the demo data, a
redis-server of the run's own, the ``redis`` configuration's settings, a demo user's token),
with one uvicorn worker, so that the server process is the one serving. Each cached route
(``GET /api/profiles/{id}`` and ``GET /api/auth/me`` with the token, ``GET /api/menu``) is
warmed, then loaded by ``wrk`` while ``py-spy record --format raw --idle --threads`` samples
the server process.

Every sample is one thread's stack. Idle samples (a thread waiting: the event loop in
``select``/``epoll``, pool threads waiting for work, ``sleep``) are counted and left out; the
busy ones are attributed to a category: a task of its own if a frame names one
(:data:`WHOLE_STACK_RULES`: the tracking connection's fence rounds, the change capture),
otherwise (:data:`RULES`) by their frames, from the leaf up: the
first frame that matches a rule decides (frames of no rule, e.g. ``asyncio`` or ``socket``,
let their caller decide; a stack of nothing but the event loop's own frames is the event
loop). A leaf frame that calls into C is charged with the C call: ``RequestResponseCycle.send``
(uvicorn) and redis-py's ``_send_packed_command`` are mostly the socket write of uvloop's
transport. redis-py runs each command's write in a task of its own (``asyncio.wait_for``, with
a socket timeout), so a Redis write's stack does not show who asked for it. Per route: each
category's share of the busy samples, and its microseconds per request (its samples / the
main thread's samples, busy and idle, i.e. its share of the wall time, x 1e6 / the req/s wrk
measured meanwhile; worker threads' samples count too).

``--source DIR`` profiles another revision: ``DIR/src`` comes first on the server's
``PYTHONPATH`` (the service runs ``python -c "from ogcache.cli import main; main()"``), while
the bench itself, the migrations and the demo data are this tree's.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.http_load import WRK_INSTALL, WrkRun, _paths, _settings, parse_wrk
from bench.resilience import AppServer, _issue_token, prepared_database
from support.servers import RedisProcess, free_port

__all__ = [
    "CATEGORIES",
    "ProfileConfig",
    "ProfilerUnavailable",
    "attribute",
    "format_report",
    "parse_raw",
    "run_profile",
]

ROUTES = ("profile", "me", "menu")
PY_SPY_INSTALL = "py-spy is not installed: uv sync --group bench (or pip install py-spy)"

Frame = tuple[str, str]  # (function, file)

# Work done in tasks of their own, whatever its leaf: a stack with a frame of this file.
WHOLE_STACK_RULES: tuple[tuple[str, str], ...] = (
    ("read fence (tracking PING rounds, relay)", r"ogcache/cache/backends/redis_tracking\.py$"),
    ("background (change capture)", r"ogcache/changes/"),
)
# (category, file pattern, function pattern or None): the first rule a frame matches.
RULES: tuple[tuple[str, str, str | None], ...] = (
    ("decoding/validating", r"ogcache/cache/codec\.py$", r"loads"),
    ("serialization", r"ogcache/cache/codec\.py$", r"dumps"),
    ("metrics", r"prometheus_client/|ogcache/cache/stats\.py$|ogcache/api/metrics\.py$", None),
    ("logging/access log", r"(^|/)logging/|ogcache/log\.py$", None),
    ("decoding/validating", r"pydantic", r"valid"),
    ("serialization", r"pydantic", r"dump|serial"),
    ("serialization", r"fastapi/routing\.py$", r"serialize_response|_prepare_response"),
    ("serialization", r"fastapi/encoders\.py$|(^|/)json/encoder\.py$", None),
    ("serialization", r"starlette/responses\.py$|ogcache/api/responses\.py$", r"render|init"),
    ("decoding/validating", r"(^|/)json/decoder\.py$|(^|/)json/__init__\.py$", r"loads|decode"),
    ("serialization", r"(^|/)json/__init__\.py$", r"dumps"),
    ("token verification", r"ogcache/services/auth\.py$|(^|/)jwt/|(^|/)hmac\.py$", None),
    ("Redis round trips", r"(^|/)redis/", None),
    ("cache tier lookups", r"ogcache/cache/", None),
    ("dependency solving", r"fastapi/dependencies/|ogcache/api/deps\.py$", None),
    (
        "our middleware",
        r"ogcache/api/(http_metrics|request_id|errors|app|hot_reads|worker_stats)\.py$",
        None,
    ),
    ("uvicorn HTTP protocol and send", r"uvicorn/|ogcache/api/httptools_protocol\.py$", None),
    ("worker-thread hop (anyio)", r"anyio/|starlette/concurrency\.py$", None),
    ("route handlers and services", r"ogcache/api/routes/|ogcache/services/|ogcache/", None),
    ("Starlette/FastAPI middleware and routing", r"starlette/|fastapi/", None),
)
EVENT_LOOP = "event loop (asyncio)"
OTHER = "other"
CATEGORIES: tuple[str, ...] = (
    *dict.fromkeys(rule[0] for rule in RULES),
    *(rule[0] for rule in WHOLE_STACK_RULES),
    EVENT_LOOP,
    OTHER,
)
_WHOLE = [(name, re.compile(files)) for name, files in WHOLE_STACK_RULES]
_COMPILED = [
    (name, re.compile(files), re.compile(functions) if functions else None)
    for name, files, functions in RULES
]

# A thread waiting, not working: its leaf frame (function, file pattern).
_IDLE_LEAVES: tuple[tuple[str, str], ...] = (
    # uvloop runs the loop in C: a stack ending in the loop's runner is the loop outside
    # Python (waiting in epoll, or its own native transport work)
    (r"(^|\.)(run|run_until_complete|run_forever|asyncio_run)$", r"asyncio/runners\.py$|"
     r"asyncio/base_events\.py$|uvicorn/_compat\.py$|uvloop"),
    (r"(^|\.)(select|poll|epoll|_poll|kqueue)$", r"selectors\.py$|select"),
    (r"(^|\.)(wait|_wait_for_tstate_lock|acquire)$", r"threading\.py$"),
    (r"(^|\.)get$", r"queue\.py$"),
    (r"(^|\.)_worker$", r"concurrent/futures/thread\.py$"),
    (r"(^|\.)sleep$", r".*"),
    (r"(^|\.)(accept|recv|recv_into|read)$", r"socket\.py$"),
)  # fmt: skip
_IDLE = [(re.compile(f), re.compile(p)) for f, p in _IDLE_LEAVES]
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


class ProfilerUnavailable(RuntimeError):
    """py-spy is missing, or could not attach to the server (permissions: ptrace)."""


@dataclass(frozen=True, slots=True)
class ProfileConfig:
    duration: int = 5  # seconds sampled per route
    warmup: float = 1.0  # seconds of wrk before, not sampled
    rate: int = 1000  # py-spy samples per second
    connections: int = 4
    threads: int = 1
    routes: tuple[str, ...] = ROUTES
    repeat: int = 1  # rounds over the routes, their samples pooled
    source: str | None = None  # another tree: DIR/src first on the server's PYTHONPATH
    configuration: str = "redis"  # bench/http_load.py's settings of that name


@dataclass
class RouteProfile:
    route: str
    path: str
    runs: list[WrkRun]  # one per round
    samples: int  # every thread's samples
    main_samples: int  # the main thread's (the event loop's), busy and idle
    idle: int
    busy: int
    categories: dict[str, int]
    top_frames: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    raw_file: str = ""
    cpu_share: float | None = None  # the server's CPU time / wall time while sampled (median)

    @property
    def requests_per_s(self) -> float:
        return statistics.median(r.requests_per_s for r in self.runs)

    @property
    def p50_ms(self) -> float:
        return statistics.median(r.p50_ms for r in self.runs)

    @property
    def idle_share(self) -> float:
        return self.idle / self.samples if self.samples else 0.0

    def share(self, category: str) -> float:
        return self.categories.get(category, 0) / self.busy if self.busy else 0.0

    def us_per_request(self, category: str) -> float:
        """The category's share of the main thread's wall time, per request."""
        if not self.main_samples or not self.requests_per_s:
            return 0.0
        wall = self.categories.get(category, 0) / self.main_samples
        return wall * 1e6 / self.requests_per_s

    def as_dict(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "path": self.path,
            "requests_per_s_median": self.requests_per_s,
            "p50_ms_median": self.p50_ms,
            "wrk_runs": [asdict(r) for r in self.runs],
            "samples": self.samples,
            "main_thread_samples": self.main_samples,
            "idle_samples": self.idle,
            "idle_share": round(self.idle_share, 4),
            "busy_samples": self.busy,
            "busy_share_of_main_thread": round(self.busy / self.main_samples, 4)
            if self.main_samples
            else None,
            "categories": {
                name: {
                    "samples": self.categories.get(name, 0),
                    "share_of_busy": round(self.share(name), 4),
                    "us_per_request": round(self.us_per_request(name), 2),
                }
                for name in CATEGORIES
            },
            "top_frames": {k: [list(f) for f in v] for k, v in self.top_frames.items()},
            "raw_file": self.raw_file,
            "server_cpu_share": None if self.cpu_share is None else round(self.cpu_share, 3),
        }


# --- py-spy's raw (collapsed) stacks --------------------------------------------------------


def parse_raw(text: str) -> list[tuple[str | None, list[Frame], int]]:
    """``frame;frame;... count`` lines, root first: (thread or None, frames, count). With
    ``--threads`` the first frame is ``thread (0x...)``; with ``--idle``, idle stacks too."""
    stacks = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        body, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        thread = None
        frames: list[Frame] = []
        for part in body.split(";"):
            if part.startswith(("thread (", "process ")):
                if part.startswith("thread ("):
                    thread = part
                continue
            found = _FRAME.match(part)
            frames.append((found["function"], found["file"]) if found else (part, ""))
        stacks.append((thread, frames, int(count)))
    return stacks


def merge_raw(texts: Iterable[str]) -> str:
    """Raw stacks of several recordings as one: each distinct stack once, its counts summed."""
    counts: Counter[str] = Counter()
    for text in texts:
        for line in text.splitlines():
            body, _, count = line.strip().rpartition(" ")
            if body and count.isdigit():
                counts[body] += int(count)
    return "".join(f"{body} {count}\n" for body, count in counts.most_common())


def is_idle(frames: list[Frame]) -> bool:
    if not frames:
        return True
    function, file = frames[-1]
    return any(f.search(function) and p.search(file) for f, p in _IDLE)


def categorize(frames: list[Frame]) -> tuple[str, Frame | None]:
    """The category of a busy stack and the frame that decided it."""
    for name, files in _WHOLE:
        for function, file in reversed(frames):
            if files.search(file):
                return name, (function, file)
    for function, file in reversed(frames):
        for name, files, functions in _COMPILED:
            if files.search(file) and (functions is None or functions.search(function)):
                return name, (function, file)
    if any("asyncio/" in file or "uvloop" in file for _, file in frames):
        return EVENT_LOOP, frames[-1] if frames else None
    return OTHER, frames[-1] if frames else None


@dataclass
class Attribution:
    samples: int = 0
    main_samples: int = 0
    idle: int = 0
    busy: int = 0
    categories: Counter[str] = field(default_factory=Counter)
    frames: dict[str, Counter[str]] = field(default_factory=dict)

    def top(self, n: int = 5) -> dict[str, list[tuple[str, int]]]:
        return {k: v.most_common(n) for k, v in self.frames.items()}


def attribute(text: str) -> Attribution:
    """Idle and busy samples, the busy ones per category. The main thread (``MainThread``,
    where uvicorn runs the event loop) gives the wall time's samples."""
    stacks = parse_raw(text)
    result = Attribution()
    per_thread: Counter[str | None] = Counter()
    for thread, frames, count in stacks:
        per_thread[thread] += count
        result.samples += count
        if is_idle(frames):
            result.idle += count
            continue
        result.busy += count
        name, frame = categorize(frames)
        result.categories[name] += count
        if frame is not None:
            where = f"{frame[0]} ({_short(frame[1])})"
            result.frames.setdefault(name, Counter())[where] += count
    threads = list(per_thread)
    candidates = [t for t in threads if t and "MainThread" in t] or threads
    if candidates:
        result.main_samples = max(per_thread[t] for t in candidates)
    return result


def _short(file: str) -> str:
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


# --- the run --------------------------------------------------------------------------------


def py_spy_binary() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise ProfilerUnavailable(PY_SPY_INSTALL)
    return found


def _server_env_source(server: AppServer, source: str | None) -> None:
    """``DIR/src`` first on the server's PYTHONPATH: that tree's ogcache is the one serving."""
    if source is None:
        return
    src = Path(source).resolve() / "src"
    if not (src / "ogcache").is_dir():
        raise RuntimeError(f"--source {source}: no src/ogcache there")
    spawn = server.spawn

    def spawn_with_source() -> None:
        previous = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), previous]))
        try:
            spawn()
        finally:
            if previous is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = previous

    server.spawn = spawn_with_source  # type: ignore[method-assign]


async def _wrk(url: str, headers: dict[str, str], seconds: float, config: ProfileConfig) -> WrkRun:
    binary = shutil.which("wrk")
    if binary is None:
        raise RuntimeError(WRK_INSTALL)
    process = await asyncio.create_subprocess_exec(
        binary,
        f"-t{config.threads}",
        f"-c{config.connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        *(part for name, value in headers.items() for part in ("-H", f"{name}: {value}")),
        url,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"wrk exited with {process.returncode}:\n{output.decode()}")
    return parse_wrk(output.decode())


async def record(pid: int, seconds: int, rate: int, output: Path) -> None:
    """``py-spy record`` of ``pid`` (idle stacks and thread ids kept: idle is counted, then
    left out); :class:`ProfilerUnavailable` if it cannot attach or wrote nothing."""
    binary = py_spy_binary()
    process = await asyncio.create_subprocess_exec(
        binary, "record", "--format", "raw", "--rate", str(rate), "--pid", str(pid),
        "--duration", str(seconds), "--idle", "--threads", "--nonblocking",
        "--output", str(output),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    text, _ = await process.communicate()
    message = text.decode(errors="replace")
    written = await asyncio.to_thread(_read, output)
    if process.returncode != 0 or not written.strip():
        first = next((line for line in message.splitlines() if line.strip()), "no output")
        raise ProfilerUnavailable(
            f"py-spy could not sample pid {pid} (exit {process.returncode}): {first}"
            " - it needs ptrace: root, CAP_SYS_PTRACE or kernel.yama.ptrace_scope=0"
        )


@dataclass(frozen=True, slots=True)
class _Sample:
    run: WrkRun
    cpu_share: float | None
    raw: str


async def sample_route(
    server: AppServer,
    pid: int,
    path: str,
    headers: dict[str, str],
    config: ProfileConfig,
    raw_file: Path,
) -> _Sample:
    """Warm the route, then wrk on it while py-spy samples the server."""
    url = server.base_url + path
    async with httpx.AsyncClient(timeout=10.0) as http:
        for _ in range(20):  # the value cached in Redis and in the process
            response = await http.get(url, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"{path} answered {response.status_code}: {response.text}")
    if config.warmup > 0:
        await _wrk(url, headers, config.warmup, config)
    load = asyncio.create_task(_wrk(url, headers, config.duration + 1, config))
    await asyncio.sleep(0.5)  # wrk connected and at speed
    cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
    try:
        await record(pid, config.duration, config.rate, raw_file)
    finally:
        cpu_after, wall_after = cpu_seconds(pid), time.monotonic()
        run = await load
    cpu = (
        None
        if cpu_before is None or cpu_after is None
        else (cpu_after - cpu_before) / (wall_after - wall_before)
    )
    return _Sample(run, cpu, await asyncio.to_thread(_read, raw_file))


def route_profile(route: str, path: str, samples: list[_Sample], raw_file: Path) -> RouteProfile:
    """The rounds' samples pooled (their stacks attributed together), wrk's figures kept."""
    found = attribute("\n".join(s.raw for s in samples))
    shares = [s.cpu_share for s in samples if s.cpu_share is not None]
    return RouteProfile(
        route=route,
        path=path,
        runs=[s.run for s in samples],
        samples=found.samples,
        main_samples=found.main_samples,
        idle=found.idle,
        busy=found.busy,
        categories=dict(found.categories),
        top_frames=found.top(),
        raw_file=str(raw_file),
        cpu_share=statistics.median(shares) if shares else None,
    )


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` so far (Linux ``/proc``), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_profile(
    config: ProfileConfig,
    *,
    database_url: str,
    raw_stem: Path,
    progress: Callable[[str], None] | None = None,
) -> list[RouteProfile]:
    """Start the service (one worker), profile each route; raw stacks to
    ``{raw_stem}-{route}.stacks``."""
    if shutil.which("wrk") is None:
        raise RuntimeError(WRK_INSTALL)
    py_spy_binary()
    say = progress or (lambda _message: None)
    secret = secrets.token_urlsafe(48)
    profiles = []
    with tempfile.TemporaryDirectory(prefix="ogcache-http-profile-") as tmp:
        workdir = Path(tmp)
        redis = await asyncio.to_thread(RedisProcess(free_port(), workdir).start)
        try:
            async with prepared_database(database_url) as db:
                token = await _issue_token(db, secret)
                settings = _settings(config.configuration, db, redis.url, secret)
                server = AppServer(settings, workdir / "service.log", workers=1)
                _server_env_source(server, config.source)
                await server.start()
                try:
                    process = server._process  # noqa: SLF001 - uvicorn serves in it (1 worker)
                    if process is None:
                        raise RuntimeError("the service is not running")
                    pid = process.pid
                    paths = _paths(token)
                    samples: dict[str, list[_Sample]] = {r: [] for r in config.routes}
                    for round_index in range(config.repeat):
                        for route in config.routes:  # rounds in turn: drift spreads evenly
                            path, headers = paths[route]
                            say(
                                f"round {round_index + 1}/{config.repeat}, {route}: {path}, "
                                f"{config.duration} s sampled"
                            )
                            raw = workdir / f"{route}-{round_index}.txt"
                            sample = await sample_route(server, pid, path, headers, config, raw)
                            samples[route].append(sample)
                    for route, taken in samples.items():
                        raw = raw_stem.with_name(f"{raw_stem.name}-{route}.stacks")
                        raw.parent.mkdir(parents=True, exist_ok=True)
                        raw.write_text(merge_raw(s.raw for s in taken))
                        profiles.append(route_profile(route, paths[route][0], taken, raw))
                finally:
                    await asyncio.to_thread(server.stop)
        finally:
            await asyncio.to_thread(redis.stop)
    return profiles


# --- report ---------------------------------------------------------------------------------


def format_report(profiles: list[RouteProfile], label: str = "") -> str:
    lines = []
    for p in profiles:
        main_busy = p.busy / p.main_samples if p.main_samples else 0.0
        lines.append(
            f"{label + ': ' if label else ''}{p.route} (GET {p.path}): "
            f"{p.requests_per_s:.0f} req/s, p50 {p.p50_ms:.2f} ms (medians of {len(p.runs)}); "
            f"{p.samples} samples, {p.idle_share:.0%} idle (loop in C, or waiting); "
            f"busy = {main_busy:.0%} of the main thread's samples"
            + ("" if p.cpu_share is None else f"; server CPU {p.cpu_share:.0%} of wall")
        )
        header = f"  {'category':<42} {'% busy':>7} {'us/req':>7}"
        lines += [header, "  " + "-" * (len(header) - 2)]
        for name in sorted(CATEGORIES, key=lambda n: -p.categories.get(n, 0)):
            if p.categories.get(name, 0) == 0:
                continue
            lines.append(
                f"  {name:<42} {p.share(name) * 100:>6.1f}% {p.us_per_request(name):>7.1f}"
            )
        total_us = sum(p.us_per_request(n) for n in CATEGORIES)
        lines.append(f"  {'total':<42} {100.0:>6.1f}% {total_us:>7.1f}")
        lines.append("")
    return "\n".join(lines)


def add_parser(commands: Any) -> None:
    defaults = ProfileConfig()
    parser = commands.add_parser(
        "http-profile",
        help="py-spy on the service under wrk: where each cached route's time goes",
    )
    parser.add_argument("--duration", type=int, default=defaults.duration, help="seconds")
    parser.add_argument("--warmup", type=float, default=defaults.warmup, help="seconds")
    parser.add_argument("--rate", type=int, default=defaults.rate, help="py-spy samples/s")
    parser.add_argument("--connections", type=int, default=defaults.connections)
    parser.add_argument(
        "--repeat", type=int, default=defaults.repeat, help="rounds, their samples pooled"
    )
    parser.add_argument(
        "--routes", default=",".join(defaults.routes), help=f"of: {', '.join(ROUTES)}"
    )
    parser.add_argument(
        "--source", default=None, help="profile the ogcache of DIR/src (another worktree)"
    )
    parser.add_argument("--label", default="", help="named in the report (e.g. before, after)")
    parser.add_argument("--output", default=None, help="default bench/results/http-profile.json")


def command(args: Any, database_url: str, results: Path) -> int:
    routes = tuple(r.strip() for r in args.routes.split(",") if r.strip())
    if not routes or set(routes) - set(ROUTES):
        print(f"--routes: comma-separated, of {', '.join(ROUTES)}")
        return 2
    config = ProfileConfig(
        duration=args.duration,
        warmup=args.warmup,
        rate=args.rate,
        connections=args.connections,
        routes=routes,
        repeat=max(1, args.repeat),
        source=args.source,
    )
    output = Path(args.output) if args.output else results / "http-profile.json"
    from bench._support import machine

    load_before = os.getloadavg()
    began = time.monotonic()
    try:
        profiles = asyncio.run(
            run_profile(
                config,
                database_url=database_url,
                raw_stem=output.with_suffix(""),
                progress=lambda m: print(m, flush=True),
            )
        )
    except ProfilerUnavailable as exc:
        print(exc)
        return 2
    print()
    print(
        f"py-spy at {config.rate}/s for {config.duration} s per route and round "
        f"({config.repeat} rounds, samples pooled) under wrk -t"
        f"{config.threads} -c{config.connections}; % of busy samples (idle threads and the "
        f"event loop waiting left out), us/req = the category's share of the main thread's "
        f"samples x 1e6 / req/s"
    )
    print(format_report(profiles, args.label))
    report = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench http-profile " + " ".join(sys.argv[2:]),
        "label": args.label,
        "machine": machine(load_before),
        "config": asdict(config),
        "seconds": round(time.monotonic() - began, 1),
        "categories": list(CATEGORIES),
        "rules": [list(rule) for rule in WHOLE_STACK_RULES] + [list(rule) for rule in RULES],
        "routes": [p.as_dict() for p in profiles],
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    output.with_suffix(".txt").write_text(format_report(profiles, args.label))
    print(f"saved {output} and its raw stacks ({report['seconds']} s)")
    return 0
