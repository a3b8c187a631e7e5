"""The accept scenario: Jain's index and the server columns read from a summary line,
the summary table with repeats, the scenario's cases and models as echo-server offers
them, and one short run end to end against the build's echo-server (12 cases of one
model): every row carries its workers' counts, the reuseport rows no empty wake-up,
and the summary and plots are written. Standard library unittest; CTest runs it after
the build (it needs build/echo-server, loadgen and bench/floor)."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import accept_modes  # noqa: E402  (bench/accept_modes.py)
import servers  # noqa: E402  (bench/servers.py: what the build's echo-server offers)


def bench_run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "bench" / "matrix.py"), *args],
                          capture_output=True, text=True, timeout=timeout)


class Numbers(unittest.TestCase):
    def test_jain_index(self):
        self.assertAlmostEqual(accept_modes.jain_index([5, 5]), 1.0)
        self.assertAlmostEqual(accept_modes.jain_index([10, 0]), 0.5)
        self.assertAlmostEqual(accept_modes.jain_index([7, 0, 0, 0]), 0.25)
        self.assertAlmostEqual(accept_modes.jain_index([3, 9]), 144 / (2 * 90))
        self.assertIsNone(accept_modes.jain_index([]))
        self.assertIsNone(accept_modes.jain_index([0, 0]))

    def test_server_columns_from_a_summary(self):
        columns = accept_modes.server_columns(
            "stopped model=prefork accepted=12 refused=0 peak_concurrent=3 bytes_echoed=9 "
            "errors=0 restarts=0 per_worker=3,9 empty_wakeups=4")
        self.assertEqual(columns, {"server_per_worker": "3;9", "server_empty_wakeups": "4",
                                   "jain_index": "0.800"})
        self.assertEqual(accept_modes.shares({"server_per_worker": "3;9"}), [75.0, 25.0])
        self.assertEqual(set(accept_modes.server_columns(
            "stopped model=libuv accepted=1 refused=0").values()), {""})

    def test_names_round_trip(self):
        for case in accept_modes.cases(["shared", "reuseport", "exclusive"]):
            self.assertEqual(accept_modes.parse_name(accept_modes.scenario_name(case)), case)
        self.assertIsNone(accept_modes.parse_name("churn"))

    def test_the_summary_shows_medians_and_spread(self):
        rows = [{"model": "prefork", "scenario": "accept-churn-2w-shared",
                 "throughput_rps": str(rps), "connect_p50_us": "100", "connect_p99_us": "900",
                 "jain_index": jain, "server_per_worker": counts, "server_empty_wakeups": "7"}
                for rps, jain, counts in ((1000, "1.000", "5;5"), (3000, "0.800", "3;9"),
                                          (2000, "0.900", "4;6"))]
        text = "\n".join(accept_modes.summary_lines(rows))
        self.assertIn("medians of 3 repeats", text)
        self.assertIn("2,000 [1,000-3,000]", text)
        self.assertIn("0.90 [0.80-1.00]", text)
        self.assertIn("50/50", text)  # the first run's shares
        self.assertEqual(accept_modes.summary_lines([]), [])


class Scenario(unittest.TestCase):
    def test_list_names_every_mode_and_worker_count(self):
        result = bench_run("--scenario", "accept", "--list")
        self.assertEqual(result.returncode, 0, result.stderr)
        models, modes = servers.accept_flag()
        self.assertTrue(models and modes, "echo-server --help shows no --accept")
        self.assertIn(f"models: {', '.join(models)}", result.stdout)
        for mode in modes:
            for workers in accept_modes.WORKERS:
                for load in ("churn", "steady"):
                    self.assertIn(f"accept-{load}-{workers}w-{mode} ", result.stdout)

    def test_a_model_without_accept_is_a_usage_error(self):
        without = [m for m in servers.registered_models() if m not in servers.accept_flag()[0]]
        result = bench_run("--scenario", "accept", "--models", without[0], "--list")
        self.assertEqual(result.returncode, 2)
        self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)
        self.assertIn(f"not a model with --accept: {without[0]}", result.stderr)

    def test_a_short_run_end_to_end(self):
        if not servers.FLOOR.exists():
            # The sanitizer presets build no benchmarks; the Release run covers this one.
            self.skipTest(f"{servers.FLOOR} is not built in this preset")
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "run"
            # One model, the first that takes --accept, keeps it short.
            model = servers.accept_flag()[0][0]
            result = bench_run("--scenario", "accept", "--models", model, "--duration",
                               "200ms", "--warmup", "100ms", "--out", str(out), timeout=240)
            self.assertEqual(result.returncode, 0, result.stdout[-2000:] + result.stderr)
            with (out / "results.csv").open(newline="") as f:
                rows = list(csv.DictReader(f))
            self.assertEqual(len(rows), 12)
            for row in rows:
                case = accept_modes.parse_name(row["scenario"])
                with self.subTest(scenario=row["scenario"]):
                    self.assertEqual(row["outcome"], "ok")
                    counts = [int(c) for c in row["server_per_worker"].split(";")]
                    self.assertEqual(len(counts), case.workers)
                    self.assertGreater(sum(counts), 0)
                    self.assertTrue(1 / case.workers - 1e-3 <= float(row["jain_index"]) <= 1)
                    self.assertTrue(row["connect_p99_us"])
                    if case.mode == "reuseport":
                        self.assertEqual(row["server_empty_wakeups"], "0")
            summary = (out / "summary.txt").read_text()
            self.assertIn("how the workers share the listener", summary)
            if shutil.which("gnuplot"):
                for load in ("churn", "steady"):
                    self.assertTrue((out / "plots" / f"accept-{load}.png").exists())


if __name__ == "__main__":
    unittest.main()
