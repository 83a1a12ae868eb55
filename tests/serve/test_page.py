"""The search page in a real headless Chromium (Debian's package; scripts/setup.sh installs it):
the keyboard types a query into the focused box and presses Enter, the page shows both served
rankings side by side, and what it shows is read back and checked against /search: the ids in
order, the documents both rankings share and their rank shifts, and an error shown in the page.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: NUL-ended
JSON on fds 3 and 4), so the test needs no driver package and no extra port.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

QUERY = "why does iron rust"


class Browser:
    """Headless Chromium with one page, driven over the DevTools pipe."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--remote-debugging-pipe"]
        flags += [f"--user-data-dir={profile}", "--window-size=1280,900", "about:blank"]
        # Chromium reads commands on fd 3 and writes replies on fd 4; copies at 10 and up first, so
        # that moving one pipe end to 3 cannot overwrite the other
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_chrome_r, from_chrome_w)]

        def to_3_and_4() -> None:
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        self.proc = subprocess.Popen(
            [binary, *flags],
            preexec_fn=to_3_and_4,
            close_fds=False,  # keep 3 and 4; Python's own descriptors are not inherited anyway (PEP 446)
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for fd in high:
            os.close(fd)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next = 0
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def send(self, method: str, session: bool = False, **params: Any) -> dict[str, Any]:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._next:
                    if "error" in reply:
                        raise AssertionError(f"{method}: {reply['error']}")
                    return dict(reply["result"])
            if select.select([self._from_chrome], [], [], 1)[0]:
                chunk = os.read(self._from_chrome, 1 << 16)
                if not chunk:
                    raise AssertionError("chromium closed the DevTools pipe")
                self._buffer += chunk
        raise AssertionError(f"{method}: no reply from chromium in 30 s")

    def page(self, method: str, **params: Any) -> dict[str, Any]:
        return self.send(method, session=True, **params)

    def js(self, expression: str) -> Any:
        result = self.page("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = self.js(expression)
            except AssertionError:  # the page is still loading (the old document answered)
                value = None
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(
            f"page never satisfied {expression!r}; it shows: {self.js('document.body.innerText')}"
        )

    def type(self, text: str) -> None:
        self.page("Input.insertText", text=text)

    def press_enter(self) -> None:
        key = {"key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13}
        self.page("Input.dispatchKeyEvent", type="keyDown", text="\r", **key)
        self.page("Input.dispatchKeyEvent", type="keyUp", **key)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip(
            "no Chromium on this machine (scripts/setup.sh installs Debian's `chromium`; it could not)"
        )
    b = Browser(binary, tmp_path / "profile")
    yield b
    b.close()


def search(url: str, index: str, k: int) -> list[str]:
    body = json.dumps({"queries": [QUERY], "k": k, "index": index}).encode()
    request = urllib.request.Request(f"{url}/search", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as r:
        return [h["id"] for h in json.load(r)["results"][0]["hits"]]


READ_COLUMNS = """JSON.stringify([...document.querySelectorAll('#results .column')].map(c => ({
  name: c.querySelector('h2').firstChild.textContent.trim(),
  ids: [...c.querySelectorAll('.hit')].map(h => h.dataset.doc),
  shared: [...c.querySelectorAll('.hit.shared')].map(h => h.dataset.doc),
  badges: [...c.querySelectorAll('.hit .badge')].map(b => b.textContent),
  titles: [...c.querySelectorAll('.hit .title')].map(t => t.textContent),
})))"""


def test_typing_a_query_shows_both_rankings_side_by_side(browser: Browser, live_server: str) -> None:
    browser.page("Page.navigate", url=f"{live_server}/?k=5")
    browser.wait_for("document.getElementById('left').options.length === 2")
    assert browser.js("document.activeElement.id") == "q"  # the box has the focus: type straight away
    browser.type(QUERY)
    browser.press_enter()
    browser.wait_for("document.body.dataset.state === 'done'")
    columns = json.loads(browser.js(READ_COLUMNS))
    assert [c["name"] for c in columns] == ["big", "small"]
    big, small = search(live_server, "big", 5), search(live_server, "small", 5)
    assert columns[0]["ids"] == big and columns[1]["ids"] == small
    both = set(big) & set(small)
    assert 0 < len(both) < 5  # the two encoders agree on some documents, not on all
    assert columns[0]["shared"] == [d for d in big if d in both]
    assert columns[1]["shared"] == [d for d in small if d in both]
    for i, doc in enumerate(small):  # each badge: the rank shift against the other ranking
        if doc not in both:
            assert columns[1]["badges"][i] == "not in big"
            continue
        delta = (big.index(doc) + 1) - (i + 1)
        want = f"= #{big.index(doc) + 1} in big" if delta == 0 else ""
        if delta:
            want = f"{'▲' if delta > 0 else '▼'}{abs(delta)} (#{big.index(doc) + 1} in big)"
        assert columns[1]["badges"][i] == want
    assert all(columns[0]["titles"])  # document titles from the corpus
    summary = browser.js("document.getElementById('summary').textContent")
    assert summary.startswith(f"{len(both)} of 5 documents in both rankings")
    assert "q=why+does+iron+rust" in browser.js("location.search")  # the URL reproduces the view


def test_errors_show_in_the_page(browser: Browser, live_server: str) -> None:
    browser.page("Page.navigate", url=f"{live_server}/?q=iron&k=1000&left=big&right=")
    browser.wait_for("document.body.dataset.state === 'error'")
    assert browser.js("document.getElementById('error').hidden") is False
    assert (
        browser.js("document.getElementById('error').textContent")
        == "k is 1000; index 'big' holds 32 documents"
    )
    assert browser.js("document.querySelectorAll('.hit').length") == 0
