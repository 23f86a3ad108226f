"""The app in a real headless Chromium: every page renders, a generation runs, screenshots.

Needs Debian's `chromium` (`apt-get install -y chromium`); skipped without
it. Screenshots go to `$STUDIO_SCREENSHOTS`, by default
`<temp>/studio-app-screenshots/`, one PNG per page (and the Generate and
Compare pages again with their results), for a person to look at.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

from .conftest import APP_SCRIPT, pid_alive, png_bytes
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


@contextlib.contextmanager
def streamlit_server(data, cwd):
    """The app served from `cwd` on a free port with the data folder `data`; yields its URL."""
    port = free_port()
    env = dict(os.environ, STUDIO_APP_DATA=str(data))
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", APP_SCRIPT,
         "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
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
    try:
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def server(workflow, tmp_path):
    with streamlit_server(workflow["data"], tmp_path) as url:
        yield url


@pytest.fixture
def fresh_app(tmp_path):
    """`(url, data folder)` of an app whose data set `my-concept` holds three images.

    The training processes the test starts are killed at the end.
    """
    data = tmp_path / "studio-data"
    images = data / "datasets" / "my-concept"
    images.mkdir(parents=True)
    for seed in range(3):
        (images / f"concept-{seed}.png").write_bytes(png_bytes(seed))
    try:
        with streamlit_server(data, tmp_path) as url:
            yield url, data
    finally:
        for record in (data / "runs").glob("*/process.json"):
            pid = json.loads(record.read_text())["pid"]
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


def run_folders(data):
    return sorted(path.name for path in (data / "runs").glob("*") if path.is_dir())


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


# The Train form's inputs a person types into (selectboxes and toggles take no text).
FORM_INPUTS = ("[data-testid=\"stForm\"] [data-testid=\"stTextInput\"] input, "
               "[data-testid=\"stForm\"] [data-testid=\"stNumberInput\"] input, "
               "[data-testid=\"stForm\"] [data-testid=\"stTextArea\"] textarea")
MAIN_TEXT = "document.querySelector('[data-testid=\"stMain\"]').innerText"


def open_advanced(browser):
    browser.click_text("[data-testid=\"stExpander\"] summary", "Advanced settings")
    time.sleep(0.5)


def set_input(browser, label, text):
    """Replaces the text of the input labelled `label` and presses Enter."""
    browser.replace_text(f"[aria-label={json.dumps(label)}]", 0, text)
    browser.press_enter()
    time.sleep(0.3)


@pytest.mark.large
def test_enter_never_starts_a_run_and_a_second_start_asks(fresh_app):
    """Acceptance 1 of issue 17: Enter in every Train field starts nothing; Start starts one."""
    url, data = fresh_app
    with DevToolsBrowser(chromium) as browser:
        open_page(browser, url, "train")
        open_advanced(browser)
        # Every setting of the method is in the form (15 for textual inversion).
        count = browser.wait_for(
            f"(n => n >= 15 && n)(document.querySelectorAll({json.dumps(FORM_INPUTS)}).length)",
            PAGE_TIMEOUT, "the settings")
        for index in range(count):
            value = browser.evaluate(
                f"document.querySelectorAll({json.dumps(FORM_INPUTS)})[{index}].value")
            browser.replace_text(FORM_INPUTS, index, value)
            browser.press_enter()
            time.sleep(0.3)
        set_input(browser, "Placeholder token", "<browser-toy>")
        set_input(browser, "Steps", "500")
        time.sleep(3)
        assert run_folders(data) == []
        assert browser.evaluate(EXCEPTIONS) == 0
        browser.screenshot(os.path.join(SCREENSHOTS, "train-form-after-enter.png"))

        assert browser.click_button("Start training")
        browser.wait_for(f"{MAIN_TEXT}.includes('<browser-toy>')", PAGE_TIMEOUT,
                         "the started run's header")
        assert len(run_folders(data)) == 1
        assert browser.click_button("Start training")
        browser.wait_for(f"{MAIN_TEXT}.includes('already training on these images')",
                         PAGE_TIMEOUT, "the question before a second run")
        assert len(run_folders(data)) == 1
        browser.screenshot(os.path.join(SCREENSHOTS, "train-second-start-asks.png"))
        assert browser.click_button("Queue it")
        browser.wait_for(f"{MAIN_TEXT}.includes('Queued runs')", PAGE_TIMEOUT, "the queue")
        assert len(run_folders(data)) == 1
        queue = json.loads((data / "runs" / ".queue.json").read_text())
        assert len(queue) == 1 and queue[0]["request"]["settings"]["token"] == "<browser-toy>"
        assert browser.evaluate(EXCEPTIONS) == 0


# Phases the DreamBooth LoRA run with class images goes through before its first step.
PHASES_BEFORE_TRAINING = ("Loading the model", "Generating class images",
                          "Checking the images", "Encoding the images",
                          "Compiling the training step")
CLASS_IMAGES = 16


@pytest.mark.large
def test_dreambooth_phases_and_class_images_in_chromium(fresh_app):
    """Acceptance 2 of issue 17: each phase, with a moving count, before the first step."""
    import re

    url, data = fresh_app
    with DevToolsBrowser(chromium) as browser:
        open_page(browser, url, "train")
        browser.click_text("label", "DreamBooth LoRA")
        browser.wait_for("!!document.querySelector('[aria-label=\"Class prompt\"]')",
                         PAGE_TIMEOUT, "the DreamBooth settings")
        time.sleep(1)
        set_input(browser, "Class prompt", "a photo of a shape")
        set_input(browser, "Class images", str(CLASS_IMAGES))
        set_input(browser, "Steps", "3")
        open_advanced(browser)
        set_input(browser, "Sampling steps per class image", "10")
        set_input(browser, "Samples every (steps)", "2")
        set_input(browser, "Sampling steps of samples", "2")
        assert browser.click_button("Start training")
        seen, shots = [], {}
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            text = browser.evaluate(MAIN_TEXT) or ""
            seen.append(text)
            if "Generating class images:" in text and "class" not in shots:
                # A contact sheet of the class images so far.
                if browser.evaluate("[...document.querySelectorAll('[data-testid=\"stExpander\"]')]"
                                    ".some(e => e.innerText.includes('Class images ('))"):
                    shots["class"] = browser.screenshot(
                        os.path.join(SCREENSHOTS, "train-class-images.png"))
            if re.search(r"Step [1-9]\d* of 3", text):
                break
            time.sleep(0.25)
        browser.screenshot(os.path.join(SCREENSHOTS, "train-dreambooth-training.png"))
        everything = "\n".join(seen)
        # The header reads from the submitted settings from the first second.
        assert "DreamBooth LoRA" in seen[0] or "DreamBooth LoRA" in seen[1]
        assert "DreamBooth (full)" not in everything
        for phase in PHASES_BEFORE_TRAINING:
            assert phase in everything, phase
        counts = set(re.findall(rf"Generating class images: (\d+) / {CLASS_IMAGES}", everything))
        assert len(counts) >= 2, counts  # the count moved while the page watched
        assert "class" in shots
        assert re.search(r"Step [1-9]\d* of 3", everything)
        assert browser.evaluate(EXCEPTIONS) == 0
