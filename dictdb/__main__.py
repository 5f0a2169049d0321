"""``python -m dictdb``: the command line (`dictdb.cli`)."""

import sys

from dictdb.cli import main

if __name__ == "__main__":
    sys.exit(main())
