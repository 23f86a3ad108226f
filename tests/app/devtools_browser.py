"""Headless Chromium driven through the DevTools protocol, for the browser test.

Only what the test needs: open a URL, wait for a JavaScript condition,
click a button by its text, take a screenshot. It talks to Debian's
`chromium` over a WebSocket (the `websockets` package Streamlit depends
on), so no browser download and no driver package are needed.
"""

import base64
import itertools
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

CHROMIUM_NAMES = ("chromium", "chromium-browser")
WINDOW_WIDTH = 1400
WINDOW_HEIGHT = 1000
STARTUP_TIMEOUT = 60


def find_chromium():
    """The path of Debian's chromium, or None."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DevToolsBrowser:
    """A headless Chromium with one page, driven over the DevTools protocol.

    Use as a context manager; the browser and its profile folder are
    removed on exit.
    """

    def __init__(self, executable):
        self.executable = executable
        self.profile = tempfile.mkdtemp(prefix="studio-chromium-")
        self.port = free_port()
        self.process = None
        self.socket = None
        self._ids = itertools.count(1)

    def __enter__(self):
        from websockets.sync.client import connect

        self.process = subprocess.Popen(
            [self.executable, "--headless=new", "--no-sandbox", "--disable-gpu",
             "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--disable-extensions",
             f"--user-data-dir={self.profile}", f"--remote-debugging-port={self.port}",
             f"--window-size={WINDOW_WIDTH},{WINDOW_HEIGHT}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        url = self._page_socket_url()
        # No keep-alive pings on a local socket, and no cap on unread events: a test
        # waiting a minute for a generation reads no events meanwhile, and a full
        # queue would stop the answers to the pings, closing the connection.
        self.socket = connect(url, max_size=None, open_timeout=STARTUP_TIMEOUT,
                              ping_interval=None, max_queue=None)
        self.send("Page.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=WINDOW_WIDTH,
                  height=WINDOW_HEIGHT, deviceScaleFactor=1, mobile=False)
        return self

    def __exit__(self, *exc_info):
        if self.socket is not None:
            self.socket.close()
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def _page_socket_url(self):
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list",
                                            timeout=2) as response:
                    targets = json.load(response)
                for target in targets:
                    if target.get("type") == "page":
                        return target["webSocketDebuggerUrl"]
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"Chromium did not open its DevTools port {self.port}")

    def send(self, method, **params):
        """Calls a DevTools method and returns its result (events are skipped)."""
        message_id = next(self._ids)
        self.socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.socket.recv())
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, url):
        self.send("Page.navigate", url=url)

    def wait_for(self, expression, timeout, what=None):
        """Waits until the JavaScript `expression` is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
            except RuntimeError:
                value = None
            if value:
                return value
            time.sleep(0.5)
        raise AssertionError(f"Timed out after {timeout} s waiting for {what or expression}")

    def click_button(self, text, timeout=60):
        """Clicks the first button whose label is `text`, waiting up to `timeout` s for it.

        Streamlit draws a page's title before the widgets under it, so a
        button may appear a while after the page looks ready. A button's
        icon is a ligature of its own line (":material/..." icons), so the
        label is the button text's last line. Returns True once clicked.
        """
        return bool(self.wait_for(
            "(() => { const b = [...document.querySelectorAll('button')]"
            ".find(b => b.innerText.trim().split('\\n').pop().trim() === "
            f"{json.dumps(text)});"
            " if (b) { b.click(); return true; } return false; })()",
            timeout,
            f"a {text!r} button",
        ))

    def press_enter(self):
        """Presses and releases Enter in the focused element, as a keyboard does."""
        for kind in ("keyDown", "keyUp"):
            params = dict(type=kind, key="Enter", code="Enter", windowsVirtualKeyCode=13,
                          nativeVirtualKeyCode=13)
            if kind == "keyDown":
                params["text"] = "\r"
            self.send("Input.dispatchKeyEvent", **params)

    def type_text(self, text):
        """Types `text` into the focused element (as an input method would)."""
        self.send("Input.insertText", text=text)

    def replace_text(self, selector, index, text):
        """Focuses the `index`-th element matching `selector`, selects its text, types `text`."""
        self.evaluate(f"(() => {{ const e = document.querySelectorAll({json.dumps(selector)})"
                      f"[{index}]; e.scrollIntoView(); e.focus(); e.select(); }})()")
        self.type_text(text)

    def click_text(self, selector, text, timeout=60):
        """Clicks the first element matching `selector` whose text contains `text`."""
        return bool(self.wait_for(
            f"(() => {{ const e = [...document.querySelectorAll({json.dumps(selector)})]"
            f".find(e => e.innerText.includes({json.dumps(text)}));"
            " if (e) { e.click(); return true; } return false; })()",
            timeout,
            f"a {selector} with {text!r}",
        ))

    def set_files(self, selector, paths):
        """Gives the file input `selector` the files `paths` (as a person choosing them)."""
        root = self.send("DOM.getDocument", depth=-1, pierce=True)["root"]["nodeId"]
        node = self.send("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        self.send("DOM.setFileInputFiles", nodeId=node, files=[os.fspath(p) for p in paths])

    def screenshot(self, path):
        """Saves the whole page (beyond the window when it scrolls) as a PNG."""
        height = self.evaluate(
            "Math.max(document.body.scrollHeight, ...[...document.querySelectorAll("
            "'[data-testid=\"stMain\"], section.main, [data-testid=\"stAppViewContainer\"]')]"
            ".map(e => e.scrollHeight))") or WINDOW_HEIGHT
        self.send("Emulation.setDeviceMetricsOverride", width=WINDOW_WIDTH,
                  height=max(WINDOW_HEIGHT, int(height)), deviceScaleFactor=1, mobile=False)
        time.sleep(0.5)
        data = self.send("Page.captureScreenshot", format="png")["data"]
        self.send("Emulation.setDeviceMetricsOverride", width=WINDOW_WIDTH,
                  height=WINDOW_HEIGHT, deviceScaleFactor=1, mobile=False)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "wb") as file:
            file.write(base64.b64decode(data))
        return path
