"""The `dictdb` logger is silent until the application configures logging."""

from __future__ import annotations

import subprocess
import sys


def test_a_warning_reaches_no_stderr_when_the_application_configured_no_logging() -> None:
    probe = (
        "import logging, dictdb\n"
        "logging.getLogger('dictdb').warning('a torn tail was cut')\n"
        "logging.getLogger('dictdb.storage').error('a backup failed')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert (0, "", "") == (proc.returncode, proc.stdout, proc.stderr)


def test_an_application_that_configures_logging_still_receives_dictdb_warnings() -> None:
    probe = (
        "import logging, sys, dictdb\n"
        "logging.basicConfig(stream=sys.stdout, format='%(name)s %(message)s')\n"
        "logging.getLogger('dictdb').warning('a torn tail was cut')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert "dictdb a torn tail was cut\n" == proc.stdout
