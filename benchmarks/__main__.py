"""Entry point: ``python -m benchmarks``."""

from benchmarks._runner import main

if __name__ == "__main__":
    raise SystemExit(main())
