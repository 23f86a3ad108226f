"""The app in a real headless Chromium: every page renders, a generation runs, screenshots.

Needs Debian's `chromium` (`apt-get install -y chromium`); skipped without
it. Screenshots go to `$STUDIO_SCREENSHOTS`, by default
`<temp>/studio-app-screenshots/`, one PNG per page (and the Generate and
Compare pages again with their results), for a person to look at.
"""

import os
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

from .conftest import APP_SCRIPT
from .devtools_browser import DevToolsBrowser, find_chromium, free_port

SCREENSHOTS = os.environ.get("STUDIO_SCREENSHOTS") or os.path.join(
    tempfile.gettempdir(), "studio-app-screenshots")
SERVER_TIMEOUT = 120
PAGE_TIMEOUT = 180
PAGE_TITLES = {"train": "Teach a concept", "runs": "Runs", "generate": "Generate",
               "compare": "Compare", "embeddings": "Embeddings"}
# Page URLs; the default page is the app's root.
PAGE_URLS = {"train": "", "runs": "runs", "generate": "generate", "compare": "compare",
             "embeddings": "embeddings"}
# True once the page's title is drawn and the script has finished running
# (Streamlit's status widget shows only while it runs).
PAGE_READY = (
    "(() => {{ const h = [...document.querySelectorAll('h1')].map(e => e.innerText);"
    " return h.some(t => t.includes({title}))"
    " && !document.querySelector('[data-testid=\"stStatusWidget\"]'); }})()"
)
EXCEPTIONS = "document.querySelectorAll('[data-testid=\"stException\"]').length"
# Every image of the page has arrived (Streamlit fetches them after drawing).
IMAGES_LOADED = ("[...document.querySelectorAll('[data-testid=\"stMain\"] img')]"
                 ".every(i => i.complete && i.naturalWidth > 0)")
# Streamlit shows its running widget a moment after a run starts: a page
# counts as drawn when it looks ready twice, this far apart.
SETTLE_SECONDS = 2
MAIN_IMAGES = "document.querySelectorAll('[data-testid=\"stMain\"] [data-testid=\"stImage\"] img, " \
              "[data-testid=\"stMain\"] [data-testid=\"stImageContainer\"] img').length"
DOWNLOAD_BUTTONS = "document.querySelectorAll('[data-testid=\"stDownloadButton\"]').length"

chromium = find_chromium()
pytestmark = pytest.mark.skipif(
    chromium is None,
    reason="Debian's chromium is not installed (apt-get install -y chromium); "
    "the browser test drives it headless",
)


@pytest.fixture
def server(workflow, tmp_path):
    port = free_port()
    env = dict(os.environ, STUDIO_APP_DATA=str(workflow["data"]))
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", APP_SCRIPT,
         "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    break
        except OSError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            pytest.fail("The Streamlit server did not start")
        time.sleep(0.5)
    yield url
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def open_page(browser, url, name):
    browser.open(f"{url}/{PAGE_URLS[name]}")
    title = PAGE_TITLES[name]
    ready = f"{PAGE_READY.format(title=repr(title))} && {IMAGES_LOADED}"
    for _ in range(2):
        browser.wait_for(ready, PAGE_TIMEOUT, f"the {name} page")
        time.sleep(SETTLE_SECONDS)  # Let charts and images finish drawing.


def test_pages_in_chromium_with_a_generation(server, workflow):
    shots = []
    with DevToolsBrowser(chromium) as browser:
        for name in PAGE_TITLES:
            open_page(browser, server, name)
            assert browser.evaluate(EXCEPTIONS) == 0, name
            shots.append(browser.screenshot(os.path.join(SCREENSHOTS, f"{name}.png")))

        open_page(browser, server, "generate")
        assert browser.click_button("Generate")
        browser.wait_for(f"{DOWNLOAD_BUTTONS} >= 2 && {MAIN_IMAGES} >= 2", PAGE_TIMEOUT,
                         "the generated images")
        time.sleep(1)
        assert browser.evaluate(EXCEPTIONS) == 0
        shots.append(browser.screenshot(os.path.join(SCREENSHOTS, "generate-result.png")))

        open_page(browser, server, "compare")
        assert browser.click_button("Make the grid")
        browser.wait_for(f"{DOWNLOAD_BUTTONS} >= 1", PAGE_TIMEOUT, "the comparison grid")
        time.sleep(1)
        shots.append(browser.screenshot(os.path.join(SCREENSHOTS, "compare-grid.png")))
    print(f"Screenshots: {SCREENSHOTS}")
    for path in shots:
        assert os.path.getsize(path) > 10_000, path  # a drawn page, not a blank one
