"""``GET /dashboard`` without a browser: the page, its script and style sheet come from the
package with the right types and a strict CSP, reference nothing outside the service, and
ship in the wheel. The browser test is tests/api/test_dashboard_browser.py."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import httpx
import pytest

from ogcache.api.routes.dashboard import ASSETS
from tests.api.conftest import one_stack
from tests.support.wheel import build_wheel

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "src" / "ogcache" / "api" / "static"

# URL -> (file in ogcache/api/static, media type)
PATHS = {
    "/dashboard": ("dashboard.html", "text/html"),
    "/dashboard/dashboard.js": ("dashboard.js", "text/javascript"),
    "/dashboard/dashboard.css": ("dashboard.css", "text/css"),
}


@one_stack
async def test_the_page_its_script_and_styles_are_served_with_a_strict_policy(
    client: httpx.AsyncClient,
) -> None:
    for path, (name, media_type) in PATHS.items():
        response = await client.get(path)
        assert response.status_code == 200, (path, response.text)
        assert response.headers["content-type"].split(";")[0] == media_type, path
        policy = response.headers["content-security-policy"]
        assert "default-src 'self'" in policy
        assert "unsafe-inline" not in policy
        assert "unsafe-eval" not in policy
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.content == (STATIC / name).read_bytes()


@one_stack
async def test_the_page_loads_its_script_and_styles_by_relative_links(
    client: httpx.AsyncClient,
) -> None:
    page = (await client.get("/dashboard")).text
    assert '<script src="dashboard/dashboard.js" defer></script>' in page
    assert '<link rel="stylesheet" href="dashboard/dashboard.css">' in page
    assert '<table id="namespaces">' in page


@one_stack
async def test_nothing_else_is_served_under_the_dashboard(client: httpx.AsyncClient) -> None:
    for path in ("/dashboard/dashboard.html", "/dashboard/../app.py", "/dashboard/x.js"):
        assert (await client.get(path)).status_code == 404, path
    schema = (await client.get("/openapi.json")).json()
    assert not [path for path in schema["paths"] if path.startswith("/dashboard")]


def test_the_files_reference_nothing_outside_the_service() -> None:
    for name in ASSETS:
        text = (STATIC / name).read_text(encoding="utf-8")
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", text, re.IGNORECASE), name
        assert "@import" not in text, name


def test_the_page_has_no_inline_code_and_the_script_no_markup_from_data() -> None:
    page = (STATIC / "dashboard.html").read_text(encoding="utf-8")
    assert re.findall(r"<script\b[^>]*>", page) == ['<script src="dashboard/dashboard.js" defer>']
    assert page.count("</script>") == 1  # and that one closes the script above
    assert not re.search(r"\sstyle=|\son[a-z]+=|javascript:", page, re.IGNORECASE)
    assert "<form" not in page  # a form would put the token in a URL if the script failed
    script = (STATIC / "dashboard.js").read_text(encoding="utf-8")
    for risky in (".innerHTML", ".outerHTML", ".insertAdjacentHTML", "document.write", "eval("):
        assert risky not in script, risky
    assert "localStorage" not in script  # the token lives in sessionStorage only


@pytest.mark.slow
def test_the_files_ship_in_the_wheel(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        for name in ASSETS:
            assert archive.read(f"ogcache/api/static/{name}") == (STATIC / name).read_bytes()
