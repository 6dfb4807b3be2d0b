"""`python -m geomcore`: the same as the `geomcore` console script."""

from geomcore.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
