"""ogcache: the cache engine (:mod:`ogcache.cache`) and the OG Lab agent backend built on it.

Importing this package imports nothing else, so ``ogcache --version`` and the lean install
(``pip install ogcache``, the engine alone) never pay for the server's dependencies.
"""

__version__ = "0.1.0"
