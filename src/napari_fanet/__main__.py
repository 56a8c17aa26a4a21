"""``python -m napari_fanet ...``: the same command line as ``napari-fanet ...``."""

from napari_fanet.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
