"""Change capture: writes made in the database by anyone reach the cache.

Triggers (migration 0003) record every committed write of a cached table in the outbox
``cache_changes``, in the writer's transaction; :class:`ChangeCapture` turns those rows into
invalidations (:mod:`ogcache.changes.mapping` says which entries each affects).
"""

from ogcache.changes.capture import CaptureSettings, CaptureStats, ChangeCapture
from ogcache.changes.mapping import Change, ChangeMap

__all__ = ["CaptureSettings", "CaptureStats", "Change", "ChangeCapture", "ChangeMap"]
