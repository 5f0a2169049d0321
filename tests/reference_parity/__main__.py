"""``python -m tests.reference_parity``: see `tests.reference_parity.run.main`."""

from tests.reference_parity.run import main

raise SystemExit(main())
