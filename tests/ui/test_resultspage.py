"""The results page as served, without a browser: one document whose inlined style and script
are exactly what the Content-Security-Policy allows, and nothing that loads from elsewhere."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from userexport import resultspage

UI = Path(resultspage.__file__).with_name("ui")


def sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def directives() -> dict[str, str]:
    policy = resultspage.CONTENT_SECURITY_POLICY
    return dict(d.strip().split(" ", 1) for d in policy.split(";"))


def test_the_style_and_script_are_inlined_and_allowed_by_their_hashes_only():
    page = resultspage.html().decode()
    styles = re.findall(r"<style>(.*?)</style>", page, re.S)
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert styles == [(UI / "app.css").read_text()]
    assert scripts == [(UI / "app.js").read_text()]
    policy = directives()
    assert policy["script-src"] == sha256(scripts[0])
    assert policy["style-src"] == sha256(styles[0])
    assert policy["default-src"] == "'none'"
    assert policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["require-trusted-types-for"] == "'script'"
    assert "unsafe" not in resultspage.CONTENT_SECURITY_POLICY
    assert resultspage.html() is resultspage.html(), "built once"


def test_nothing_is_loaded_from_elsewhere_and_no_string_becomes_html():
    page = resultspage.html().decode()
    # The only absolute URL is the SVG namespace, an identifier that is never fetched.
    urls = set(re.findall(r"https?://[^\s\"'`)]+", page))
    assert urls == {"http://www.w3.org/2000/svg"}, urls
    assert not re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)=(?![\"']?data:)", page)
    script = (UI / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink
