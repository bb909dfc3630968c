"""Loads `kubectl render ui`'s pages in Debian's chromium at several window widths and measures
where a long-named render lands on them.

    python layout_check.py URL NAME SCREENSHOT_DIR WIDTH...

For each WIDTH: the list page once its script has fetched the rows at least once (the boxes of
NAME's row's cells, the name link's title and whether its text is cut), then NAME's own page
(the box of its title). Boxes are in CSS pixels from the window's left edge; `clientWidth` is the
window's width without a scrollbar, `scrollWidth` how wide the page is. Writes one screenshot of
each page per width, the window as a user sees it, and prints one JSON object of what it saw (the
Rust test judges it); exits non-zero only when the browser itself could not be driven.
"""
import json
import os
import sys
import tempfile

from playwright.sync_api import sync_playwright

url, name, shots = sys.argv[1:4]
widths = [int(w) for w in sys.argv[4:]]
os.makedirs(shots, exist_ok=True)
seen = {"widths": {}, "errors": [], "screenshots": []}
# Without the background-networking flags chromium keeps dialling out on a closed network.
args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# A box in CSS pixels from the window's left edge.
BOX = """const box = el => { const r = el.getBoundingClientRect();
                     return {left: r.left, right: r.right, width: r.width}; };"""

LIST = """name => {
  %s
  const row = Array.from(document.querySelectorAll('#rows tr')).find(r => r.dataset.name === name);
  const page = {clientWidth: document.documentElement.clientWidth,
                scrollWidth: document.documentElement.scrollWidth,
                error: document.body.dataset.error || ''};
  if (!row) return page;
  const link = row.querySelector('td.name a');
  return Object.assign(page, {
    cells: Array.from(row.children).map(box),
    columns: Array.from(document.querySelectorAll('table.renders th')).map(th => th.textContent),
    title: link ? link.title : null,
    cut: link ? link.scrollWidth > link.clientWidth : null,
  });
}""" % BOX

RENDER = """() => {
  %s
  const h1 = document.querySelector('main h1');
  return {clientWidth: document.documentElement.clientWidth,
          scrollWidth: document.documentElement.scrollWidth,
          title: h1 ? box(h1) : null, text: h1 ? h1.textContent : null};
}""" % BOX


def shot(page, file):
    path = os.path.join(shots, file)
    page.screenshot(path=path)
    seen["screenshots"].append(path)


with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
    browser = p.chromium.launch_persistent_context(
        profile, executable_path="/usr/bin/chromium", args=args, headless=True,
        viewport={"width": widths[0], "height": 720})
    page = browser.new_page()
    page.on("console", lambda m: m.type == "error" and seen["errors"].append(m.text))
    for width in widths:
        page.set_viewport_size({"width": width, "height": 720})
        page.goto(url)
        # The rows as the page's script swaps them in from /api/renders, not only as served.
        page.wait_for_function("Number(document.body.dataset.polls || 0) >= 1", timeout=30_000)
        at = {"list": page.evaluate(LIST, name)}
        shot(page, f"list-long-name-{width}.png")
        page.goto(f"{url}r/{name}")
        page.wait_for_selector("main h1", timeout=30_000)
        at["render"] = page.evaluate(RENDER)
        shot(page, f"render-long-name-{width}.png")
        seen["widths"][str(width)] = at
    browser.close()

print(json.dumps(seen))
