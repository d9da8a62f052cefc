"""Helpers shared by the test suite (``tests/``) and the benchmarks (``bench/``) for starting
the servers they run against: a redis-server of one's own (:mod:`support.servers`) and a
proxy that makes a server slow (:mod:`support.latency_proxy`).

It lives at the repository root so that ``bench`` never imports ``tests``; it is not part of
the ``ogcache`` package (not in the wheel). Importable from the repository root: by pytest
(``pythonpath`` in ``pyproject.toml``) and by ``python -m bench`` (the working directory).
"""
