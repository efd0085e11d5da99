"""Open every page of the built HTML book in headless Chromium and check that it works offline.

The book in ``_build/html`` (``bash scripts/build.sh``) is served on 127.0.0.1 and each page is
loaded in Debian's Chromium (``/usr/bin/chromium``, driven by Playwright; no Playwright browser
download). A page fails when it

* makes any request to a host other than 127.0.0.1 (the request is aborted and reported),
* references a non-local script, stylesheet, font, image or frame in its HTML,
* raises a JavaScript error or logs a console error,
* has a local request that fails or answers with HTTP status >= 400,
* has a MathJax error (``mjx-merror``) or math that MathJax did not typeset,
* shows a broken image (``naturalWidth == 0``).
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urljoin, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
CHROMIUM = os.environ.get("FMBOOK_CHROMIUM", "/usr/bin/chromium")
LOCAL_HOST = "127.0.0.1"
NOT_PAGES = {"_static", "_sources", "_images", "mathjax", "reports"}  # asset folders, not pages

_REFRESH = re.compile(r'<meta[^>]+http-equiv="?refresh"?[^>]+url=([^"\'>]+)', re.IGNORECASE)

_NOT_LOCAL = re.compile(r"^(?!(https?|wss?)://127\.0\.0\.1(:\d+)?(/|$))")

BUILD_HINT = "the HTML book is not built: run `bash scripts/build.sh` first (it writes _build/html)"


def _pages() -> list[str]:
    if not HTML.is_dir():
        return []
    pages = []
    for path in HTML.rglob("*.html"):
        rel = path.relative_to(HTML)
        if rel.parts[0] in NOT_PAGES:
            continue
        pages.append(rel.as_posix())
    return sorted(pages)


PAGES = _pages()

try:  # with pytest-xdist, keep every page in one worker so that one browser serves them all
    import xdist  # noqa: F401

    pytestmark = pytest.mark.xdist_group("browser")
except ImportError:
    pass


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".mjs": "text/javascript",
        ".woff": "font/woff",
        ".woff2": "font/woff2",
        ".svg": "image/svg+xml",
        ".json": "application/json",
    }

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture(scope="module")
def server():
    if not (HTML / "index.html").is_file():
        pytest.fail(BUILD_HINT)
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer((LOCAL_HOST, 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="book-server", daemon=True)
    thread.start()
    yield f"http://{LOCAL_HOST}:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover
        pytest.fail("playwright is not installed: run `bash scripts/setup.sh`")
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.fail(
            f"{CHROMIUM} not found: install Debian's Chromium (`sudo apt-get install chromium`), "
            "or run `bash scripts/test.sh`, which installs it"
        )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


def _is_local(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    return parts.scheme in ("http", "https", "ws", "wss") and parts.hostname == LOCAL_HOST


@pytest.fixture(scope="module")
def context(browser):
    external: list[str] = []  # filled by the route handler, read and cleared by each test

    def guard(route):
        url = route.request.url
        if _is_local(url):
            route.continue_()
        else:
            external.append(url)
            route.abort("blockedbyclient")

    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
    ctx.set_default_timeout(30_000)
    # Route only what is not on 127.0.0.1 (routing local requests too would send each of them
    # through Python and slow every page down); the guard aborts and records it.
    ctx.route(_NOT_LOCAL, guard)
    yield SimpleNamespace(ctx=ctx, external=external)
    ctx.close()


# Runs in the page once it has loaded. Returns what it found; the test turns it into failures.
_PAGE_CHECKS = r"""
async () => {
  const out = {math: 0, untypeset: [], merrors: [], mathjax: null, images: [], refs: []};
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // Every element that loads something must load it from this server.
  const loaders = [
    ["script[src]", "src"], ["img[src]", "src"], ["iframe[src]", "src"],
    ["source[src]", "src"], ["video[src]", "src"], ["audio[src]", "src"],
    ["embed[src]", "src"], ["object[data]", "data"], ["input[type=image][src]", "src"],
  ];
  for (const [sel, attr] of loaders) {
    for (const el of document.querySelectorAll(sel)) out.refs.push(el[attr] || el.getAttribute(attr));
  }
  const loadingRels = /\b(stylesheet|preload|modulepreload|prefetch|preconnect|dns-prefetch|icon|manifest|apple-touch-icon)\b/i;
  for (const el of document.querySelectorAll("link[href]")) {
    if (loadingRels.test(el.getAttribute("rel") || "")) out.refs.push(el.href);
  }

  // Math: Sphinx wraps every formula in an element of class "math".
  const math = Array.from(document.querySelectorAll(".math"));
  out.math = math.length;
  if (math.length) {
    const t0 = Date.now();
    while (!(window.MathJax && window.MathJax.startup && window.MathJax.startup.promise)) {
      if (Date.now() - t0 > 20000) { out.mathjax = "MathJax did not load within 20 s"; break; }
      await sleep(50);
    }
    if (!out.mathjax) {
      try { await window.MathJax.startup.promise; }
      catch (e) { out.mathjax = "MathJax.startup.promise rejected: " + e; }
    }
    out.untypeset = math.filter((el) => !el.querySelector("mjx-container"))
                        .map((el) => el.textContent.trim().slice(0, 100));
  }
  out.merrors = Array.from(document.querySelectorAll("mjx-merror")).map(
    (el) => (el.getAttribute("data-mjx-error") || el.textContent || "").slice(0, 200));

  // Images: load lazy ones too, then look for broken ones.
  const imgs = Array.from(document.images);
  for (const img of imgs) img.loading = "eager";
  await Promise.all(imgs.map((img) => Promise.race([img.decode().catch(() => null), sleep(10000)])));
  out.images = imgs.filter((img) => img.naturalWidth === 0).map((img) => img.currentSrc || img.src);

  if (document.fonts && document.fonts.ready) await Promise.race([document.fonts.ready, sleep(10000)]);
  return out;
}
"""


def _wait_until_quiet(page, inflight: set, quiet_s: float = 0.2, limit_s: float = 10.0) -> None:
    """Let the page's requests settle: none in flight for ``quiet_s`` (at most ``limit_s``)."""
    deadline = time.monotonic() + limit_s
    quiet_since = None
    while time.monotonic() < deadline:
        page.wait_for_timeout(25)  # also lets Playwright deliver the request events
        now = time.monotonic()
        if inflight:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= quiet_s:
            return


def test_book_is_built():
    assert (HTML / "index.html").is_file(), BUILD_HINT
    assert PAGES, BUILD_HINT


@pytest.mark.parametrize("page_path", PAGES)
def test_page(page_path, server, context):
    failures: list[str] = []
    external = context.external
    external.clear()
    page = context.ctx.new_page()

    page.on("pageerror", lambda exc: failures.append(f"JavaScript error: {exc}"))

    def on_console(msg):
        if msg.type == "error":
            loc = msg.location or {}
            where = f" ({loc.get('url', '')}:{loc.get('lineNumber', '')})" if loc.get("url") else ""
            failures.append(f"console error: {msg.text}{where}")

    def on_failed(request):
        if _is_local(request.url):
            failures.append(f"local request failed: {request.url} ({request.failure})")

    def on_response(response):
        if response.status >= 400:
            failures.append(f"HTTP {response.status}: {response.url}")

    inflight: set = set()
    page.on("request", lambda request: inflight.add(request.url))
    page.on("requestfinished", lambda request: inflight.discard(request.url))
    page.on("requestfailed", lambda request: inflight.discard(request.url))
    page.on("console", on_console)
    page.on("requestfailed", on_failed)
    page.on("response", on_response)

    try:
        response = page.goto(f"{server}/{page_path}", wait_until="load")
        if response is None or not response.ok:
            failures.append(f"page did not load: {response and response.status}")
        redirect = _REFRESH.search((HTML / page_path).read_text(encoding="utf-8", errors="replace")[:2000])
        if redirect:  # e.g. the top-level index.html that jupyter-book writes: check where it leads
            target = urljoin(f"{server}/{page_path}", redirect.group(1).strip())
            page.wait_for_url(target, wait_until="load")
        found = page.evaluate(_PAGE_CHECKS)
        _wait_until_quiet(page, inflight)  # lazily loaded fonts and MathJax extensions
    finally:
        page.close()

    if found["mathjax"]:
        failures.append(found["mathjax"])
    for text in found["untypeset"]:
        failures.append(f"math not typeset by MathJax: {text!r}")
    for err in found["merrors"]:
        failures.append(f"MathJax error: {err}")
    for src in found["images"]:
        failures.append(f"broken image: {src}")
    for ref in found["refs"]:
        if ref and not _is_local(ref):
            failures.append(f"non-local resource in the HTML: {ref}")
    for url in external:
        failures.append(f"network request outside {LOCAL_HOST} (blocked): {url}")
    external.clear()

    unique = list(dict.fromkeys(failures))
    assert not unique, f"{page_path}: {len(unique)} problem(s)\n  " + "\n  ".join(unique)


# -- static explorers and animations: the players must respond to their buttons without a kernel ----------------
def _player_pages() -> list[str]:
    return [p for p in PAGES if "_anim_img" in (HTML / p).read_text(encoding="utf-8", errors="replace")]


PLAYER_PAGES = _player_pages()

# For every player on the page: pause it, then step it with its own buttons; report what the picture did.
_STEP_PLAYERS = r"""
async () => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const results = [];
  for (const img of document.querySelectorAll('img[id^="_anim_img"]')) {
    const id = img.id.slice("_anim_img".length);
    const button = (action) => document.querySelector(`button[onclick*="anim${id}.${action}()"]`);
    const pause = button("pause_animation"), next = button("next_frame"), first = button("first_frame");
    if (!pause || !next || !first) { results.push({id, error: "player buttons not found"}); continue; }
    pause.click(); first.click(); await sleep(50);
    const start = img.src;
    const seen = new Set([start]);
    for (let i = 0; i < 3; i++) { next.click(); await sleep(50); seen.add(img.src); }
    results.push({id, distinct: seen.size, loaded: img.naturalWidth > 0});
  }
  return results;
}
"""


@pytest.mark.parametrize("page_path", PLAYER_PAGES)
def test_static_players_respond(page_path, server, context):
    page = context.ctx.new_page()
    try:
        page.goto(f"{server}/{page_path}", wait_until="load")
        results = page.evaluate(_STEP_PLAYERS)
    finally:
        page.close()
        context.external.clear()
    assert results, f"{page_path}: no player found"
    problems = [r for r in results if r.get("error") or r["distinct"] < 2 or not r["loaded"]]
    assert not problems, f"{page_path}: players that did not change their picture when stepped: {problems}"


CHAPTER_PAGES = [p for p in PAGES if re.match(r"book/(\d\d_|quickstart)", p)]


def test_every_chapter_has_a_static_explorer():
    """Each chapter (and the quickstart) shows an fmlib.explorer player in the static book (issue: interactivity)."""
    assert CHAPTER_PAGES, BUILD_HINT
    missing = [p for p in CHAPTER_PAGES
               if "Static view" not in (text := (HTML / p).read_text(encoding="utf-8", errors="replace"))
               or "_anim_img" not in text]
    assert not missing, f"chapter pages without a static explorer: {missing}"


# -- no MyST source left unparsed in the pages (e.g. a directive fence that does not start its own line) ---------
_RAW_MYST = re.compile(r"(\{(?:cite|term|ref|doc|eq|numref)(?::[a-z]+)?\}`|```|:label:|\{prf:|\{exercise\}|\{solution-)")


def _visible_text(page_html: str) -> str:
    s = re.sub(r"<(script|style)[^>]*>.*?</\1>", "", page_html, flags=re.S)
    s = re.sub(r"<pre.*?</pre>|<code.*?</code>", "", s, flags=re.S)  # code may show MyST on purpose
    return re.sub(r"<[^>]+>", " ", s)


@pytest.mark.parametrize("page_path", PAGES)
def test_no_raw_myst_markup(page_path):
    import html as _html

    text = _html.unescape(_visible_text((HTML / page_path).read_text(encoding="utf-8", errors="replace")))
    raw = [" ".join(text[max(0, m.start() - 60): m.end() + 30].split()) for m in _RAW_MYST.finditer(text)]
    assert not raw, f"{page_path}: MyST markup rendered as text: {raw[:3]}"
