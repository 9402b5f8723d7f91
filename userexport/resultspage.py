"""The "Bulk operation results" page (GET /api/ui): one self-contained HTML document.

The page's HTML, CSS and JavaScript live in userexport/ui/ as plain files (no build step). They
are served as one document, the stylesheet and the script inlined, because with the FUNCTION
auth level every URL of the app needs the function key: separate asset URLs would need it too.
The document is built once, when this module is imported, and kept.

CONTENT_SECURITY_POLICY allows exactly the inlined style and script (by their SHA-256 hashes),
API calls to the app's own origin and nothing else: no external sources, no other inline code,
no plugins, no framing; Trusted Types are required, so no string ever becomes HTML.
"""

from __future__ import annotations

import base64
import hashlib
from importlib import resources

_STYLESHEET_TAG = '<link rel="stylesheet" href="app.css">'
_SCRIPT_TAG = '<script src="app.js"></script>'


def _read(name: str) -> str:
    return resources.files("userexport").joinpath("ui", name).read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def _build() -> tuple[bytes, str]:
    page, css, script = _read("index.html"), _read("app.css"), _read("app.js")
    for tag in (_STYLESHEET_TAG, _SCRIPT_TAG):
        if page.count(tag) != 1:
            raise RuntimeError(f"userexport/ui/index.html must hold {tag} exactly once.")
    if "</style" in css.lower() or "</script" in script.lower() or "<!--" in script:
        raise RuntimeError("app.css / app.js cannot be inlined: they hold a closing tag.")
    # Inline a stylesheet as the same text the hash is computed over (what the browser hashes).
    document = page.replace(_STYLESHEET_TAG, f"<style>{css}</style>").replace(
        _SCRIPT_TAG, f"<script>{script}</script>"
    )
    policy = "; ".join(
        (
            "default-src 'none'",
            f"script-src {_sha256(script)}",
            f"style-src {_sha256(css)}",
            "connect-src 'self'",
            "img-src data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
            "require-trusted-types-for 'script'",
            "trusted-types 'none'",
        )
    )
    return document.encode("utf-8"), policy


_DOCUMENT, _POLICY = _build()
CONTENT_SECURITY_POLICY: str = _POLICY


def html() -> bytes:
    """The page: index.html with app.css and app.js inlined (UTF-8)."""
    return _DOCUMENT
