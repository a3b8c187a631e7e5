"""Headless Chromium (Debian's chromium) driven over the DevTools protocol on a pipe,
standard library only: what the tests that load a page as a user's browser does use
(the bench's HTML report, the ws chat page)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from pathlib import Path


class Browser:
    """Chromium driven over --remote-debugging-pipe: JSON messages ending in NUL, written
    to its fd 3 and read from its fd 4."""

    def __init__(self, binary: str, profile: Path):
        to_child_r, self.to_child = os.pipe()
        self.from_child, from_child_w = os.pipe()
        # The child's 3 and 4 must be these pipes: a shell puts them there, then execs.
        self.proc = subprocess.Popen(
            ["sh", "-c", f'exec "$0" "$@" 3<&{to_child_r} 4>&{from_child_w}', binary,
             "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
            pass_fds=(to_child_r, from_child_w),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child_r)
        os.close(from_child_w)
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout_s: float = 20) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            reply = self.read(deadline)
            if reply is None:
                break
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)
        raise RuntimeError(f"{method}: no answer from chromium in {timeout_s} s")

    def read(self, deadline: float) -> dict | None:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.from_child], [], [], left)[0]:
                return None
            data = os.read(self.from_child, 65536)
            if not data:
                return None
            self.buffer += data
        message, _, self.buffer = self.buffer.partition(b"\0")
        return json.loads(message)

    def close(self):
        try:
            os.write(self.to_child, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.to_child)
        os.close(self.from_child)

    def open_page(self, url: str, timeout_s: float = 20) -> str:
        """A new tab showing `url`, loaded; returns its session id (Runtime, Log and
        Page enabled)."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget",
                            {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self.send(f"{domain}.enable", session=session)
        self.send("Page.navigate", {"url": url}, session=session)
        if not self.wait_for(session, "document.readyState === 'complete'", timeout_s):
            raise RuntimeError(f"{url}: the page did not finish loading")
        return session

    def evaluate(self, session: str, expression: str):
        """The value of a JavaScript expression in the page."""
        reply = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                          session=session)
        if "exceptionDetails" in reply:
            raise RuntimeError(f"{expression}: {reply['exceptionDetails']}")
        return reply.get("result", {}).get("value")

    def wait_for(self, session: str, condition: str, timeout_s: float = 10) -> bool:
        """Polls a JavaScript condition until it is true or `timeout_s` passes."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.evaluate(session, condition):
                return True
            time.sleep(0.05)
        return False

    def errors(self) -> list[dict]:
        """Exceptions, console calls and error log entries seen so far."""
        return [e for e in self.events
                if e.get("method") in ("Runtime.exceptionThrown", "Runtime.consoleAPICalled")
                or (e.get("method") == "Log.entryAdded"
                    and e["params"]["entry"].get("level") == "error")]
