"""Our deliberate differences from the reference, by the node id of the test that shows one.

Each reason says what we do instead and why; README.md "Differences from the reference"
groups them. A reference test failing for any other reason is a bug in our parity.
"""

from __future__ import annotations

from typing import Final

DIFFERENCES: Final[dict[str, str]] = {}

#: Tests that fail only when run as root, as the reference's own do: root ignores the
#: permission bits they rely on (a read-only directory, an unreadable file).
ROOT_ONLY: Final[dict[str, str]] = {}
