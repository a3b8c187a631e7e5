"""bench/run --server-args: a bad spec or a flag echo-server refuses is a one-line usage
error (exit 2) before anything runs, and a good one reaches the server the bench starts.
Standard library unittest; CTest runs it after the build (it needs build/echo-server)."""

from __future__ import annotations

import subprocess
import sys
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import cgroups  # noqa: E402
import servers  # noqa: E402  (bench/servers.py)


def bench_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "bench" / "matrix.py"), *args],
                          capture_output=True, text=True, timeout=60)


class ServerArgs(unittest.TestCase):
    def test_bad_specs_are_usage_errors(self):
        for spec, says in (("thread", "is not MODEL=FLAGS"),
                           ("nosuch=--buffer-size 4", "unknown model nosuch"),
                           ("thread=--buffer-size 0", "--buffer-size"),
                           ("thread=--no-such-flag", "--no-such-flag"),
                           ("thread='unclosed", "No closing quotation")):
            with self.subTest(spec=spec):
                result = bench_run("--scenario", "latency", "--quick", "--list",
                                   "--server-args", spec)
                self.assertEqual(result.returncode, 2, result.stderr)
                self.assertIn(says, result.stderr)
                self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)

    def test_the_same_model_twice_is_refused(self):
        result = bench_run("--list", "--server-args", "thread=--buffer-size 4",
                           "--server-args", "thread=--buffer-size 8")
        self.assertEqual(result.returncode, 2)
        self.assertIn("thread given twice", result.stderr)

    def test_the_flags_reach_the_server_the_bench_starts(self):
        servers.SERVER_ARGS["libuv"] = ["--buffer-size", "32"]
        try:
            server = servers.Server("libuv", None, 0)
            try:
                self.assertIsNone(server.wait_ready())
                cmdline = Path(f"/proc/{server.proc.pid}/cmdline").read_bytes().split(b"\0")
                self.assertIn(b"--buffer-size", cmdline)
                self.assertEqual(cmdline[cmdline.index(b"--buffer-size") + 1], b"32")
            finally:
                error, _ = server.stop()
                self.assertIsNone(error)
        finally:
            servers.SERVER_ARGS.clear()
            cgroups.remove_parents()


if __name__ == "__main__":
    unittest.main()
