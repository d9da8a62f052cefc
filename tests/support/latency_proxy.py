"""The slow-Redis proxy lives in :mod:`support.latency_proxy` (shared with ``bench/``)."""

from support.latency_proxy import LatencyProxy

__all__ = ["LatencyProxy"]
