"""``python -m bench changes`` in a tiny configuration: raw SQL writes (menu price, profile
field, block, revoke) against ``ogcache serve --workers 2``, change capture on and off, and
the triggers' cost. It checks the report's fields and that with capture on every write
reached the cache before the cap; the figures themselves come from the longer run of
``bench/README.md``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.__main__ import main
from bench.changes import KINDS

pytestmark = pytest.mark.slow

CAP_S = 2.0


def test_changes_bench_reports_both_modes_and_capture_on_beats_the_cap(
    postgres_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OGCACHE_BENCH_DATABASE_URL", postgres_url)
    monkeypatch.setenv("OGCACHE_BENCH_REDIS_URL", redis_url)
    output = tmp_path / "changes.json"
    main(
        [
            "changes", "--duration", "1.6", "--warm", "0.5", "--cap", str(CAP_S),
            "--targets", "3", "--statements", "40", "--rounds", "2",
            "--output", str(output),
        ]
    )  # fmt: skip
    report = json.loads(output.read_text())

    for name in ("machine", "config", "cost_config", "feature", "checks", "modes"):
        assert name in report
    assert [m["capture"] for m in report["modes"]] == [True, False]
    for mode in report["modes"]:
        assert [s["kind"] for s in mode["summaries"]] == ["all", *KINDS]
        for name in ("lags_ms", "readers", "server", "inconsistent_logged", "regressions"):
            assert name in mode
        assert mode["summaries"][0]["writes"] == 8  # one every 0.2 s for 1.6 s
    assert report["feature"]["capture_triggers"], "no capture triggers in the migrated database"

    on = report["modes"][0]
    total = on["summaries"][0]
    assert total["stale"] == 0, on["stale_examples"]
    assert total["max_ms"] is not None
    assert total["max_ms"] < CAP_S * 1000
    assert on["errors"] == []
    assert on["readers"]["failed"] == 0, on["readers"]["failure_examples"]

    cost = report["trigger_cost"]["statements"]
    assert [c["table"] for c in cost] == ["menu_items", "user_profiles", "agent_events"]
    for c in cost:
        assert c["count"] == {"enabled": 40, "disabled": 40}
        assert c["outbox_rows_per_statement"], "the enabled triggers wrote no outbox row"
