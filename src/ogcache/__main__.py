"""``python -m ogcache``: the same as the ``ogcache`` command."""

from ogcache.entry import main

if __name__ == "__main__":
    main()
