"""bench/run --scenario chat: --list names the Node peer and every model with a ws form;
the summary states each model's deliveries/s over the peer's and the idle members' cost
against the targets, from rows whose numbers are known; the peer the scenario starts
comes up, answers, and exits 0 on SIGTERM with its summary line.
Standard library unittest; CTest runs it after the build (it needs build/echo-server)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import chat_scenario  # noqa: E402  (bench/chat_scenario.py)
import peers  # noqa: E402
import servers  # noqa: E402


def row(rate: float, p99: float, lost: float = 0, closed: float | None = None,
        rss_kb: float = 4096) -> dict[str, str]:
    cells = {"outcome": "ok", "deliveries_per_s": str(rate), "latency_p99_us": str(p99),
             "deliveries_lost": str(lost), "duration_s": "2", "loadgen_cpu_s": "0.5",
             "server_cpu_s": "1.0", "server_rss_peak_kb": str(rss_kb)}
    if closed is not None:
        cells["server_evicted"] = str(closed)
    return cells


class ChatScenario(unittest.TestCase):
    def test_list_names_the_peer_and_the_ws_models(self):
        result = subprocess.run([sys.executable, str(ROOT / "bench" / "matrix.py"), "--scenario",
                                 "chat", "--duration", "1s", "--list"],
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        traits = servers.model_traits()
        relaying = [m for m, protocols in servers.registered_models().items()
                    if "ws" in protocols and traits[m] & set(chat_scenario.RELAYING_TRAITS)]
        self.assertIn("against " + ", ".join(["node-ws"] + relaying), result.stdout)
        self.assertIn(f"{4 * (1 + len(relaying))} runs of 1 s", result.stdout)

    def test_summary_states_the_ratios_against_the_targets(self):
        plan = chat_scenario.cases()
        rows = {}
        for name, _, idle in plan:
            rows[("node-ws", name)] = [row(100_000, 1000, closed=0 if idle else None)]
            rows[("libuv", name)] = [row(250_000, 900 if not idle else 1700,
                                         closed=100 if idle else None,
                                         rss_kb=4096 + (100 * 1024 if idle else 0))]
            rows[("epoll", name)] = [row(150_000, 900 if not idle else 2000,
                                         closed=100 if idle else None,
                                         rss_kb=4096 + (250 * 1024 if idle else 0))]
        text = "\n".join(chat_scenario.summary(["node-ws", "libuv", "epoll"], plan, rows))
        self.assertIn("libuv over the Node peer, chat-10: 250,000 / 100,000 = 2.50x "
                      "deliveries/s (target >= 2x): met", text)
        self.assertIn("epoll over the Node peer, chat-1000: 150,000 / 100,000 = 1.50x "
                      "deliveries/s (target >= 2x): MISSED", text)
        self.assertIn("libuv: p99 with 100 idle members 1,700 us over 900 us without = 1.89x "
                      "(target <= 2x): met; idle members it evicted: 100", text)
        self.assertIn("epoll: p99 with 100 idle members 2,000 us over 900 us without = 2.22x "
                      "(target <= 2x): MISSED", text)
        # Per idle member libuv held 1 MiB more and epoll 2.5 MiB: the bound is the
        # 1 MiB backlog in a buffer of at most twice that.
        self.assertIn("libuv: peak RSS with 100 idle members 104.0 MiB, without 4.0 MiB: "
                      "1.00 MiB per idle member (bound: its 1MiB backlog, at most 2 MiB with "
                      "the buffer's spare capacity): within", text)
        self.assertIn("epoll: peak RSS with 100 idle members 254.0 MiB, without 4.0 MiB: "
                      "2.50 MiB per idle member", text)
        self.assertIn("spare capacity): OVER", text)
        self.assertIn("node-ws: peak RSS", text)
        # loadgen 0.5 s and libuv 1.0 s of CPU over 500,000 deliveries.
        self.assertIn("loadgen CPU per delivery 1000 ns against the libuv server's 2000 ns", text)

    def test_a_server_that_delivers_nothing_with_idle_members_misses(self):
        plan = chat_scenario.cases()
        rows = {}
        for name, _, idle in plan:
            rows[("node-ws", name)] = [row(100_000, 1000)]
            rows[("threadpool", name)] = [row(0 if idle else 50_000, 800, closed=0)]
            if idle:
                rows[("threadpool", name)][0]["latency_p99_us"] = ""
        text = "\n".join(chat_scenario.summary(["node-ws", "threadpool"], plan, rows))
        self.assertIn("threadpool: with 100 idle members nothing was delivered (target: p99 <= "
                      "2x of 800 us): MISSED; idle members it evicted: 0", text)

    def test_with_the_peer_alone_no_ratio_is_claimed(self):
        plan = chat_scenario.cases()
        rows = {("node-ws", name): [row(100_000, 1000)] for name, _, _ in plan}
        text = "\n".join(chat_scenario.summary(["node-ws"], plan, rows))
        self.assertIn("no echo-server model lists ws among its protocols yet", text)
        self.assertNotIn("over the Node peer", text)

    @unittest.skipIf(shutil.which("node") is None, "node is not installed")
    def test_the_peer_starts_answers_and_stops_cleanly(self):
        peer = peers.WsPeer([], "64k")
        self.assertIsNone(peer.wait_ready())
        with socket.create_connection(("127.0.0.1", peer.port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertTrue(s.recv(100).startswith(b"HTTP/1.1 426"))
        error, summary = peer.stop()
        self.assertIsNone(error)
        self.assertEqual(summary, "closed 0 members past the backlog")
        self.assertEqual(chat_scenario.evicted(summary), "0")
        stopped = "stopped model=epoll protocol=ws evicted=7 dropped=0"
        self.assertEqual(chat_scenario.evicted(stopped), "7")


if __name__ == "__main__":
    unittest.main()
