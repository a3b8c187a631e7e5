"""bench's index.html, built from a run folder made here, checked as a user's browser
sees it: headless Chromium (Debian's chromium) loads it from disk over the DevTools
protocol (on a pipe, standard library only), and every image must load with no console
error, no script and nothing fetched from elsewhere. CTest runs it."""

from __future__ import annotations

import json
import re
import shutil
import struct
import sys
import tempfile
import time
import unittest
import zlib
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
import report  # noqa: E402  (bench/report.py)
from chromium import Browser  # noqa: E402  (tests/support/chromium.py)


def png(width: int, height: int) -> bytes:
    """A valid grey PNG of the given size."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def make_run(folder: Path) -> None:
    (folder / "plots").mkdir(parents=True)
    (folder / "cases").mkdir()
    (folder / "histograms").mkdir()
    (folder / "results.csv").write_text("model,scenario,throughput_rps\nlibuv,idle-0,1000\n")
    (folder / "summary.txt").write_text("req/s (p99 us) by scenario and model: <&> 1,000\n")
    (folder / "machine.txt").write_text("cpu_model: test\n")
    for name in ("throughput", "p99"):
        (folder / "plots" / f"{name}.png").write_bytes(png(40, 30))
    (folder / "cases" / "libuv-idle-0.csv").write_text("model\nlibuv\n")
    (folder / "histograms" / "libuv-idle-0.hgrm").write_text("       Value   Percentile\n")


class ReportTest(unittest.TestCase):
    def setUp(self):
        self.dir = Path(tempfile.mkdtemp(prefix="cb-report-"))
        make_run(self.dir / "run")
        self.index = report.write_index(self.dir / "run", "bench run test", "bench/run --quick")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_the_page_is_self_contained(self):
        text = self.index.read_text()
        self.assertNotIn("<script", text.lower())
        self.assertIsNone(re.search(r"(src|href)=\"(https?:)?//", text), text)
        for link in ("results.csv", "cases/libuv-idle-0.csv", "histograms/libuv-idle-0.hgrm",
                     "plots/throughput.png", "plots/p99.png", "summary.txt"):
            self.assertIn(f"\"{link}\"", text)
        self.assertIn("&lt;&amp;&gt;", text)  # the summary's text is escaped

    def test_chromium_loads_every_image_without_a_console_error(self):
        binary = shutil.which("chromium")
        if binary is None:
            self.skipTest("Debian's chromium is not installed (tests/run installs it)")
        browser = Browser(binary, self.dir / "profile")
        try:
            target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = browser.send("Target.attachToTarget",
                                   {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Runtime", "Log", "Page"):
                browser.send(f"{domain}.enable", session=session)
            browser.send("Page.navigate", {"url": self.index.as_uri()}, session=session)
            loaded = False
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not loaded:
                state = browser.send("Runtime.evaluate", {
                    "expression": "document.readyState", "returnByValue": True}, session=session)
                loaded = state.get("result", {}).get("value") == "complete"
                time.sleep(0.1)
            self.assertTrue(loaded, "the page did not finish loading")
            images = browser.send("Runtime.evaluate", {
                "expression": "JSON.stringify(Array.from(document.images).map("
                              "i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0]))",
                "returnByValue": True}, session=session)["result"]["value"]
            images = json.loads(images)
            self.assertEqual(len(images), 2, images)
            self.assertTrue(all(ok for _, ok in images), images)
            errors = [e for e in browser.events
                      if e.get("method") in ("Runtime.exceptionThrown", "Runtime.consoleAPICalled")
                      or (e.get("method") == "Log.entryAdded"
                          and e["params"]["entry"].get("level") == "error")]
            self.assertEqual(errors, [])
        finally:
            browser.close()


if __name__ == "__main__":
    unittest.main()
