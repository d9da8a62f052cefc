"""Counters summed over every worker of ``ogcache serve --workers N``.

Each uvicorn worker is a process with its own counters (plain integers in
:mod:`ogcache.cache.stats`, the HTTP ones in :mod:`ogcache.api.http_metrics`), and a scrape
of ``/metrics`` reaches one worker: Prometheus saw 19, 16, 19, 16 (false counter resets).

Design: ``serve`` with several workers makes a directory and names it in
``OGCACHE_WORKER_STATS_DIR``. Every worker writes the counter and histogram families of its
registry to a file of its own there (JSON, written to a temporary file and renamed, so a reader
sees a whole snapshot) every :data:`PUBLISH_INTERVAL` second, at shutdown, and before it
answers a scrape or ``GET /api/cache``. The answering worker reports its live families plus
the others' files, summed by series. Files of workers that stopped or died stay, so totals
never go down when a worker is replaced.

Why not the alternatives:

- prometheus_client's multiprocess mode only aggregates its own ``Counter``/``Histogram``
  objects (mmap'd values), not custom collectors: every increment of the cache's statistics
  would have to be mirrored into it on the hot path, and the latency windows with it.
- a ``worker`` label alone does not help: each scrape still reaches one worker, so the
  others' series vanish and come back; the shared store is needed anyway.
- Redis: the metrics would depend on the component they watch (``ogcache_cache_up 0`` must
  still be scraped), and every flush would be a network round trip.

Monotonic: a worker's contribution to any answer is its latest written snapshot (the
answering worker writes before it reads), and snapshots of one worker only grow. Staleness:
another worker's figures are at most :data:`PUBLISH_INTERVAL` (1 s) plus one event-loop
stall old; the answering worker's are current. Gauges (circuit state, ``up``, the in-process
tier) are the answering worker's own. Without the variable (one process, tests) nothing is
written and ``/metrics`` is exactly the process's registry.

Cost (measured on a busy 2-core box, ten namespaces in use): a publish is ~1.5-2.5 ms
(collecting the families ~1 ms, JSON ~0.5 ms, ~30 KB written to tmpfs), once a second per
worker; ``serve`` puts the directory under ``/dev/shm`` because renaming over a file on
ext4 cost ~3 ms more. A scrape with three other workers reads and sums their files:
~15 ms. A replaced worker's file is kept (its totals must not vanish), so the directory
grows by one file per worker restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric

__all__ = [
    "DIRECTORY_VARIABLE",
    "PUBLISH_INTERVAL",
    "WorkerFigures",
    "WorkerRegistry",
    "add_workers",
    "publish_forever",
    "shared_directory",
    "workers_of",
]

logger = logging.getLogger("ogcache.api")

DIRECTORY_VARIABLE = "OGCACHE_WORKER_STATS_DIR"
PUBLISH_INTERVAL = 1.0
_SUMMED = frozenset({"counter", "histogram"})


@dataclass(frozen=True, slots=True)
class WorkerFigures:
    """One worker's summed families as last published."""

    pid: int
    alive: bool
    age: float  # seconds since written (0 for the answering worker)
    families: list[Metric]

    def total(self, sample: str, **labels: str) -> float:
        """Sum of the samples named ``sample`` whose labels include ``labels``."""
        return sum(
            s.value
            for family in self.families
            for s in family.samples
            if s.name == sample and labels.items() <= s.labels.items()
        )


class WorkerRegistry(CollectorRegistry):
    """``local``'s families with every other worker's counters and histograms added."""

    def __init__(
        self, local: CollectorRegistry, directory: Path, worker: str | None = None
    ) -> None:
        super().__init__(auto_describe=False)
        self.local = local
        self.directory = directory
        self.worker = worker or f"{os.getpid()}-{secrets.token_hex(4)}"
        self._path = directory / f"{self.worker}.json"

    def publish(self, *, final: bool = False) -> list[Metric]:
        """Write this worker's summed families; return all of its families."""
        families = list(self.local.collect())
        document = {
            "pid": os.getpid(),
            "written": time.time(),
            "final": final,
            "families": [_encode(f) for f in families if f.type in _SUMMED],
        }
        temporary = self._path.with_suffix(".tmp")
        try:
            temporary.write_text(json.dumps(document, separators=(",", ":")))
            temporary.replace(self._path)
        except OSError as exc:  # the figures are still served, only not shared this time
            logger.warning("cannot publish this worker's statistics: %s", exc)
        return families

    def workers(self) -> list[WorkerFigures]:
        """This worker (first, current: published now) and every other one's last snapshot."""
        own = WorkerFigures(os.getpid(), True, 0.0, self.publish())
        return [own, *self._others()]

    def collect(self) -> Iterator[Metric]:
        own, *others = self.workers()
        yield from merge(own.families, [other.families for other in others])

    def _others(self) -> Iterator[WorkerFigures]:
        now = time.time()
        for path in sorted(self.directory.glob("*.json")):
            if path == self._path:
                continue
            try:
                document = json.loads(path.read_text())
            except (OSError, ValueError):  # removed meanwhile: the directory's owner stopped
                continue
            age = max(0.0, now - document["written"])
            alive = not document["final"] and age <= 3 * PUBLISH_INTERVAL
            families = [_decode(f) for f in document["families"]]
            yield WorkerFigures(document["pid"], alive, age, families)


def merge(own: list[Metric], others: Iterable[list[Metric]]) -> Iterator[Metric]:
    """``own`` with the counter and histogram samples of ``others`` added series by series;
    families only the others have come after."""
    series: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    order = list(own)
    known = {family.name for family in own}
    for families in (own, *others):
        for family in families:
            if family.type not in _SUMMED:
                continue
            if family.name not in known:
                known.add(family.name)
                order.append(family)
            target = series.setdefault(family.name, {})
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                target[key] = target.get(key, 0.0) + sample.value
    for family in order:
        if family.type not in _SUMMED:
            yield family
            continue
        merged = Metric(family.name, family.documentation, family.type, family.unit)
        for (name, labels), value in series[family.name].items():
            merged.add_sample(name, dict(labels), value)
        yield merged


def _encode(family: Metric) -> dict[str, Any]:
    return {
        "name": family.name,
        "help": family.documentation,
        "type": family.type,
        "unit": family.unit,
        "samples": [[s.name, s.labels, s.value] for s in family.samples],
    }


def _decode(document: dict[str, Any]) -> Metric:
    family = Metric(document["name"], document["help"], document["type"], document["unit"])
    for name, labels, value in document["samples"]:
        family.add_sample(name, labels, value)
    return family


# GET /api/cache's namespace fields that are counters, and their samples in /metrics.
_NAMESPACE_COUNTERS = {
    "hits": "hits",
    "localHits": "local_hits",
    "misses": "misses",
    "loads": "loads",
    "loadErrors": "load_errors",
    "errors": "errors",
    "invalidations": "invalidations",
    "verified": "verified",
    "inconsistent": "inconsistent",
}


def workers_of(registry: CollectorRegistry) -> list[WorkerFigures]:
    """Every worker's figures (the answering one first); just this process without a
    shared directory."""
    if isinstance(registry, WorkerRegistry):
        return registry.workers()
    return [WorkerFigures(os.getpid(), True, 0.0, list(registry.collect()))]


def add_workers(body: dict[str, Any], workers: list[WorkerFigures]) -> None:
    """Make ``GET /api/cache``'s per-namespace counters totals over ``workers`` (latency
    figures stay the answering worker's) and add the per-worker breakdown as ``workers``."""
    per_worker = [_namespaces(worker) for worker in workers]
    stats = body["stats"]
    if len(workers) > 1:
        namespaces: dict[str, dict[str, Any]] = stats["namespaces"]
        for entry in namespaces.values():
            entry.update(dict.fromkeys(_NAMESPACE_COUNTERS, 0))
        for figures in per_worker:
            for name, counts in figures.items():
                entry = namespaces.setdefault(name, _empty_namespace())
                for field, value in counts.items():
                    entry[field] += value
        for entry in namespaces.values():
            entry["hitRate"] = _rate(entry["hits"], entry["misses"])
        total = {f: sum(e[f] for e in namespaces.values()) for f in _NAMESPACE_COUNTERS}
        stats["hitRate"] = _rate(total["hits"], total["misses"])
        if "verifier" in stats:
            stats["verifier"].update(verified=total["verified"], inconsistent=total["inconsistent"])
    body["workers"] = [
        _worker_json(worker, figures) for worker, figures in zip(workers, per_worker, strict=True)
    ]


def _namespaces(worker: WorkerFigures) -> dict[str, dict[str, int]]:
    figures: dict[str, dict[str, int]] = {}
    for field, sample in _NAMESPACE_COUNTERS.items():
        for family in worker.families:
            for s in family.samples:
                if s.name == f"ogcache_cache_{sample}_total":
                    counts = figures.setdefault(s.labels["namespace"], {})
                    counts[field] = int(s.value)
    return figures


def _worker_json(worker: WorkerFigures, figures: dict[str, dict[str, int]]) -> dict[str, Any]:
    hits = sum(counts.get("hits", 0) for counts in figures.values())
    misses = sum(counts.get("misses", 0) for counts in figures.values())
    return {
        "pid": worker.pid,
        "alive": worker.alive,
        "updatedSecondsAgo": round(worker.age, 3),
        "hits": hits,
        "localHits": sum(counts.get("localHits", 0) for counts in figures.values()),
        "misses": misses,
        "hitRate": _rate(hits, misses),
        "requests": int(worker.total("ogcache_http_requests_total")),
        "namespaces": {
            name: {field: counts.get(field, 0) for field in ("hits", "localHits", "misses")}
            for name, counts in figures.items()
        },
    }


def _empty_namespace() -> dict[str, Any]:
    """A namespace only other workers have used: their counters, no latency figures here."""
    return {
        **dict.fromkeys(_NAMESPACE_COUNTERS, 0),
        "hitRate": None,
        "inconsistencyAgeSeconds": 0.0,
        "latencyMs": {"mean": None, "p50": None, "p99": None},
        "loadLatencyMs": {"mean": None, "p99": None},
    }


def _rate(hits: int, misses: int) -> float | None:
    return hits / (hits + misses) if hits + misses else None


async def publish_forever(registry: WorkerRegistry, interval: float = PUBLISH_INTERVAL) -> None:
    """Publish every ``interval`` seconds until cancelled, then once more, marked final."""
    try:
        while True:
            await asyncio.sleep(interval)
            registry.publish()
    finally:
        registry.publish(final=True)


@contextlib.contextmanager
def shared_directory(workers: int) -> Iterator[None]:
    """For ``serve``: with several workers, a fresh directory for their statistics (named
    in the environment the workers inherit), removed afterwards. A directory already named
    in the environment is used as it is (its owner empties it between runs)."""
    if workers <= 1 or os.environ.get(DIRECTORY_VARIABLE):
        yield
        return
    # In memory where there is /dev/shm: renaming over a file on ext4 forces its blocks to
    # disk (auto_da_alloc), ~3 ms per publish on a busy disk against ~0.03 ms on tmpfs.
    shm = Path("/dev/shm")  # noqa: S108 - a private directory made by mkdtemp
    parent = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    directory = tempfile.mkdtemp(prefix="ogcache-workers-", dir=parent)
    os.environ[DIRECTORY_VARIABLE] = directory
    try:
        yield
    finally:
        os.environ.pop(DIRECTORY_VARIABLE, None)
        shutil.rmtree(directory, ignore_errors=True)
