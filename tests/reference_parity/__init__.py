"""Reference API parity: the reference DictDB's own test suite, run against this package.

``python -m tests.reference_parity`` downloads the reference's source distribution (PyPI
``dctdb`` 1.11.0) with pip into ``.cache/reference_parity/``, extracts only its ``tests/``,
runs them with pytest against this package (imported as ``dictdb``), and prints the outcome
of every test, the totals, and each failure next to our list of deliberate differences
(`tests.reference_parity.differences`). It exits non-zero when a failure is not on that list
or when fewer than 95% of the tests pass. It needs the network (or a pip index that has the
sdist), so it is not part of the default test run; nothing of the reference is copied here.

Modules: `run` (download, extract, run, report), `differences` (the data table: test node id
→ why we differ), `_collector` (the pytest plugin, loaded in the child run, that records
each test's outcome).
"""
