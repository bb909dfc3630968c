"""Drives Debian's chromium with Playwright through `kubectl render ui` while a render runs.

    python ui_check.py URL NAME SCREENSHOT_DIR TIMEOUT_SECONDS PREVIEW_TIMEOUT_SECONDS FAILED_NAME

Watches the render page until the render ends, recording every progress value and every
thumbnail that loaded, then waits up to PREVIEW_TIMEOUT_SECONDS for the preview video to be
playable; then opens FAILED_NAME's page (a render whose batches fail) for its failed batches
and their log tails. Writes screenshots and prints one JSON object of what it saw (the Rust test judges
it); exits non-zero only when the browser itself could not be driven.
"""
import json
import os
import sys
import tempfile
import time

from playwright.sync_api import sync_playwright

url, name, shots, timeout, preview_timeout, failed_name = sys.argv[1:7]
timeout, preview_timeout = float(timeout), float(preview_timeout)
os.makedirs(shots, exist_ok=True)
seen = {"progress": [], "thumbs": [], "phases": [], "errors": [], "screenshots": []}
# Without the background-networking flags chromium keeps dialling out on a closed network.
args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def shot(page, file):
    path = os.path.join(shots, file)
    page.screenshot(path=path, full_page=True)
    seen["screenshots"].append(path)


def state(page):
    return page.evaluate("""() => {
      const bar = document.getElementById('progress');
      const img = document.getElementById('thumb');
      const v = document.getElementById('video');
      const c = document.getElementById('contact');
      return {
        rendered: bar ? Number(bar.dataset.rendered) : null,
        total: bar ? Number(bar.dataset.total) : null,
        width: bar ? bar.firstElementChild.style.width : null,
        phase: (document.getElementById('phase') || {}).textContent || null,
        thumb: img && !img.hidden && img.complete && img.naturalWidth > 0
          ? {src: img.getAttribute('src'), naturalWidth: img.naturalWidth,
             naturalHeight: img.naturalHeight} : null,
        batches: Array.from(document.querySelectorAll('#batches .b')).map(b => b.dataset.state),
        video: v && v.getAttribute('src') ? {readyState: v.readyState, duration: v.duration,
          width: v.videoWidth, height: v.videoHeight, error: v.error && v.error.code} : null,
        contact: c && c.getAttribute('src') && c.complete ? c.naturalWidth : 0,
        note: (document.getElementById('preview-note') || {}).textContent || '',
        error: document.body.dataset.error || '',
      };
    }""")


with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
    browser = p.chromium.launch_persistent_context(
        profile, executable_path="/usr/bin/chromium", args=args, headless=True,
        viewport={"width": 1100, "height": 640})
    page = browser.new_page()
    page.on("console", lambda m: m.type == "error" and seen["errors"].append(m.text))

    # The list: the render's row with its progress bar.
    page.goto(url)
    page.wait_for_selector(f'tr[data-name="{name}"] .bar', timeout=30_000)
    seen["list_row"] = page.inner_text(f'tr[data-name="{name}"]')
    shot(page, "list.png")

    page.goto(f"{url}r/{name}")
    deadline = time.time() + timeout
    running_shot = False
    last = None
    while time.time() < deadline:
        s = state(page)
        last = s
        if s["rendered"] is not None and (not seen["progress"] or seen["progress"][-1] != s["rendered"]):
            seen["progress"].append(s["rendered"])
        if s["phase"] and (not seen["phases"] or seen["phases"][-1] != s["phase"]):
            seen["phases"].append(s["phase"])
        if s["thumb"] and s["thumb"]["src"] not in [t["src"] for t in seen["thumbs"]]:
            seen["thumbs"].append(s["thumb"])
        if s["error"]:
            seen["errors"].append(s["error"])
        if not running_shot and s["phase"] == "Running" and 2 * s["rendered"] >= s["total"] > s["rendered"]:
            shot(page, "render-running.png")
            running_shot = True
        if s["phase"] in ("Succeeded", "Failed"):
            break
        time.sleep(0.3)
    seen["after_render"] = last

    # The preview: the video playable (readyState >= 2 is HAVE_CURRENT_DATA) and the sheet.
    ended = time.time()
    deadline = ended + preview_timeout
    while time.time() < deadline:
        s = state(page)
        last = s
        if s["video"] and s["video"]["readyState"] >= 2 and s["contact"] > 0:
            break
        if s["note"].startswith(("Preview failed", "Preview turned off")):
            break
        # An operator that makes previews names one in status from the start.
        if s["note"].startswith("No preview") and time.time() - ended > 60:
            break
        time.sleep(0.5)
    seen["final"] = last
    shot(page, "render.png")

    # A failed render: each failed batch with its reason and the end of its pod's log.
    page.goto(f"{url}r/{failed_name}")
    try:
        page.wait_for_function(
            "() => Array.from(document.querySelectorAll('#live .failed pre'))"
            ".some(p => p.textContent.trim().length > 0)", timeout=180_000)
    except Exception as e:  # the Rust test reports what is missing
        seen["errors"].append(f"no failed batch with a log on {failed_name}'s page: {e}")
    seen["failed"] = page.evaluate("""() => Array.from(document.querySelectorAll('#live .failed'))
      .map(f => ({batch: f.dataset.batch, text: f.innerText,
                  log: (f.querySelector('pre') || {}).textContent || ''}))""")
    seen["failed_cells"] = page.evaluate(
        "() => Array.from(document.querySelectorAll('#batches .b')).map(b => b.dataset.state)")
    shot(page, "render-failed.png")
    page.goto(url)
    page.wait_for_selector(f'tr[data-name="{failed_name}"] .bar', timeout=30_000)
    seen["list_final"] = page.inner_text("#rows")
    shot(page, "list-final.png")
    browser.close()

print(json.dumps(seen))
