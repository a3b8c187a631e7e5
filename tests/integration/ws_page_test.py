#!/usr/bin/env python3
"""The chat page of echo-server --protocol ws, as a user's browser sees it: headless
Chromium loads GET / twice from every model whose rooms hold more than one member, both
pages join the same room, one sends, and the other shows the message (and the sender
sees its own); no console error, nothing fetched from elsewhere. A model whose rooms
hold one member (iterative) serves one page at a time, so it is left out.
Usage: ws_page_test.py PATH_TO_ECHO_SERVER [--screenshot FILE.png]"""

from __future__ import annotations

import base64
import shutil
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
import ws_test  # noqa: E402  (the server process and the model list)
from chromium import Browser  # noqa: E402  (tests/support/chromium.py)

SCREENSHOT: str | None = None


def join(browser: Browser, session: str, name: str, room: str) -> None:
    browser.evaluate(session, f"document.getElementById('name').value = {name!r};"
                              f"document.getElementById('room').value = {room!r};"
                              "document.getElementById('join').click(); true")
    if not browser.wait_for(session, "document.getElementById('status').textContent"
                                     f" === 'in room {room}'"):
        raise AssertionError(f"{name} did not join: " + str(browser.evaluate(
            session, "document.getElementById('status').textContent")))


def say(browser: Browser, session: str, text: str) -> None:
    browser.evaluate(session, f"document.getElementById('text').value = {text!r};"
                              "document.getElementById('send').click(); true")


def log_has(text: str) -> str:
    return f"document.getElementById('log').textContent.includes({text!r})"


class ChatPage(unittest.TestCase):
    def test_two_pages_in_a_room_see_each_others_messages(self):
        binary = shutil.which("chromium")
        if binary is None:
            self.skipTest("Debian's chromium is not installed (tests/run installs it)")
        models = [m for m in ws_test.ws_models()
                  if {"loop-rooms", "shared-rooms", "hub-rooms"} & set(ws_test.MODELS[m][1])]
        self.assertIn("epoll", models)
        profile = Path(tempfile.mkdtemp(prefix="cb-chat-page-"))
        browser = Browser(binary, profile)
        try:
            for model in models:
                with self.subTest(model=model), ws_test.Server(model) as server:
                    url = f"http://127.0.0.1:{server.port}/"
                    alice = browser.open_page(url)
                    bob = browser.open_page(url)
                    join(browser, alice, "alice", "tea")
                    join(browser, bob, "bob", "tea")
                    say(browser, alice, f"hello from {model}")
                    self.assertTrue(browser.wait_for(bob, log_has(f"alice: hello from {model}")))
                    self.assertTrue(browser.wait_for(alice, log_has(f"alice: hello from {model}")))
                    say(browser, bob, "hi alice")
                    self.assertTrue(browser.wait_for(alice, log_has("bob: hi alice")))
                    if SCREENSHOT and model == models[0]:
                        browser.send("Emulation.setDeviceMetricsOverride", {
                            "width": 600, "height": 480, "deviceScaleFactor": 1,
                            "mobile": False}, session=alice)
                        shot = browser.send("Page.captureScreenshot", {"format": "png"},
                                            session=alice)
                        Path(SCREENSHOT).write_bytes(base64.b64decode(shot["data"]))
                    for session in (alice, bob):
                        browser.send("Page.close", session=session)
            self.assertEqual(browser.errors(), [])
        finally:
            browser.close()
            shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    ws_test.SERVER = sys.argv.pop(1)
    if "--screenshot" in sys.argv:
        at = sys.argv.index("--screenshot")
        SCREENSHOT = sys.argv[at + 1]
        del sys.argv[at:at + 2]
    ws_test.MODELS = ws_test.list_models()
    unittest.main()
