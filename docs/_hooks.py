"""mkdocs hook: links from a page to a file outside docs/ point at the repository.

The pages link to ARCHITECTURE.md, benchmarks/README.md and the source relatively, so that
they work when read on the repository too; on the built site those files do not exist, and
`mkdocs build --strict` would fail on the links. Each such link becomes
``<repo_url>/blob/main/<path>``; links inside docs/ are left to mkdocs to check.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

_LINK = re.compile(r"\]\((?P<target>[^)\s#]+)(?P<anchor>#[^)\s]*)?(?P<title>\s+\"[^\"]*\")?\)")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Rewrite the relative links of *page* that leave the docs directory."""
    repo = str(config["repo_url"]).rstrip("/")
    here = posixpath.dirname(page.file.src_uri)

    def rewrite(match: re.Match[str]) -> str:
        target = match["target"]
        if "://" in target or target.startswith(("/", "mailto:")):
            return match[0]
        path = posixpath.normpath(posixpath.join("docs", here, target))
        if path.startswith("docs/"):
            return match[0]
        return f"]({repo}/blob/main/{path}{match['anchor'] or ''}{match['title'] or ''})"

    return _LINK.sub(rewrite, markdown)
