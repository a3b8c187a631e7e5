"""bench/compare against runs whose difference is known: identical loads say no
difference, a model made 40 % slower in every run is reported worse with a non-zero
exit under --threshold, cases found in one run only are not compared, and its rank test
agrees with the exact Mann-Whitney values. Standard library unittest; CTest runs it."""

from __future__ import annotations

import csv
import importlib.machinery
import importlib.util
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

COMPARE = Path(__file__).resolve().parents[2] / "bench" / "compare"
COLUMNS = ["model", "scenario", "protocol", "label", "connections", "slow_clients", "slow_mode",
           "payload_bytes", "rate_rps", "threads", "max_inflight", "throughput_rps",
           "latency_p50_us", "latency_p99_us", "server_cpu_s", "requests", "outcome"]


def load_compare():
    loader = importlib.machinery.SourceFileLoader("bench_compare", str(COMPARE))
    spec = importlib.util.spec_from_loader("bench_compare", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def write_run(path: Path, factors: dict[str, float], runs: int = 3) -> None:
    """Three runs of three models, throughput spread +-4 % around a base, p99 following."""
    spread = [0.96, 1.0, 1.04]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for run in range(runs):
            for model, base in (("epoll", 170_000), ("libuv", 160_000), ("thread", 110_000)):
                rps = base * factors.get(model, 1.0) * spread[run % 3]
                writer.writerow(dict(model=model, scenario="idle-0", protocol="tcp", label="idle-0",
                                     connections=16, slow_clients=0, slow_mode="idle",
                                     payload_bytes=64, rate_rps="", threads=1, max_inflight=1,
                                     throughput_rps=f"{rps:.1f}", latency_p50_us="90",
                                     latency_p99_us=f"{32e6 / rps:.1f}", server_cpu_s="4.9",
                                     requests=f"{rps * 5:.0f}", outcome="ok"))


class CompareTest(unittest.TestCase):
    def setUp(self):
        self.dir = Path(tempfile.mkdtemp(prefix="cb-compare-"))

    def run_compare(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(COMPARE), *args], capture_output=True,
                              text=True, timeout=60)

    def test_the_same_load_twice_shows_no_difference(self):
        write_run(self.dir / "a.csv", {})
        write_run(self.dir / "b.csv", {})
        result = self.run_compare(str(self.dir / "a.csv"), str(self.dir / "b.csv"),
                                  "--threshold", "5", "--out", str(self.dir))
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertNotIn("worse", result.stdout)
        rows = list(csv.DictReader((self.dir / "compare.csv").open()))
        self.assertEqual(len(rows), 3)

    def test_a_slower_model_is_reported_worse_and_fails_the_gate(self):
        write_run(self.dir / "a.csv", {})
        write_run(self.dir / "b.csv", {"thread": 0.6})
        result = self.run_compare(str(self.dir / "a.csv"), str(self.dir / "b.csv"),
                                  "--threshold", "5", "--out", str(self.dir))
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertIn("thread idle-0: throughput 0.60x", result.stderr)
        rows = {r["model"]: r for r in csv.DictReader((self.dir / "compare.csv").open())}
        self.assertEqual(rows["thread"]["throughput_verdict"], "worse")
        self.assertEqual(rows["epoll"]["throughput_verdict"], "no significant difference")
        # Without --threshold the same comparison is a report, not a gate.
        self.assertEqual(self.run_compare(str(self.dir / "a.csv"), str(self.dir / "b.csv"),
                                          "--out", str(self.dir)).returncode, 0)

    def test_runs_joined_by_commas_are_pooled_as_repeats(self):
        for name in ("a1", "a2", "a3"):
            write_run(self.dir / f"{name}.csv", {}, runs=1)
        for name in ("b1", "b2", "b3"):
            write_run(self.dir / f"{name}.csv", {"thread": 0.6}, runs=1)
        # One run a side each time; pooled, three, as write_run spreads them.
        side = lambda prefix: ",".join(str(self.dir / f"{prefix}{i}.csv") for i in (1, 2, 3))
        result = self.run_compare(side("a"), side("b"), "--out", str(self.dir))
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("[3 vs 3 runs]", result.stdout)

    def test_one_run_a_side_is_too_few_to_tell(self):
        write_run(self.dir / "a.csv", {}, runs=1)
        write_run(self.dir / "b.csv", {"thread": 0.6}, runs=1)
        result = self.run_compare(str(self.dir / "a.csv"), str(self.dir / "b.csv"),
                                  "--threshold", "5", "--out", str(self.dir))
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("too few runs to tell", result.stdout)

    def test_bad_input_is_one_line_and_exit_two(self):
        for args in ([str(self.dir / "missing"), str(self.dir / "missing")],
                     [str(COMPARE), str(COMPARE)]):
            result = self.run_compare(*args)
            self.assertEqual(result.returncode, 2, result.stderr)
            self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)

    def test_latency_runs_match_steps_by_share_and_compare_capacities(self):
        # Two latency-scenario run folders: the steps' rates follow each run's own probe,
        # bisection steps land anywhere, and libuv's capacity is 40 % lower in B.
        for side, factor in (("a", 1.0), ("b", 0.6)):
            folder = self.dir / side
            folder.mkdir()
            with (folder / "results.csv").open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=COLUMNS + ["repeat"])
                writer.writeheader()
                for repeat, wobble in enumerate((0.97, 1.0, 1.03), 1):
                    probe = 100_000 * wobble * (factor if side == "b" else 1)
                    for label, rate in (("closed", ""), ("50%", f"{probe / 2:.1f}"),
                                        ("bisect", f"{probe * 0.8 + repeat:.1f}")):
                        writer.writerow(dict(
                            model="libuv", scenario="latency-idle-0", protocol="tcp", label=label,
                            connections=64, slow_clients=0, slow_mode="idle", payload_bytes=64,
                            rate_rps=rate, threads=1, max_inflight="",
                            throughput_rps=f"{float(rate or probe):.1f}",
                            latency_p50_us=f"{100 * wobble:.0f}", latency_p99_us=f"{300 * wobble:.0f}",
                            server_cpu_s="1", requests="100000", outcome="ok", repeat=repeat))
            with (folder / "capacity.csv").open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=["model", "slow_clients", "slow_mode",
                                                       "slo_p99_us", "closed_loop_rps",
                                                       "capacity_rps", "note", "repeat"])
                writer.writeheader()
                for repeat, wobble in enumerate((0.97, 1.0, 1.03), 1):
                    writer.writerow(dict(model="libuv", slow_clients=0, slow_mode="idle",
                                         slo_p99_us=1000, closed_loop_rps=100_000,
                                         capacity_rps=f"{80_000 * wobble * factor:.1f}",
                                         note="", repeat=repeat))
        result = self.run_compare(str(self.dir / "a"), str(self.dir / "b"), "--threshold", "5",
                                  "--out", str(self.dir / "out"))
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertIn("2 cases in both", result.stdout)  # closed and 50 %; no bisection step
        self.assertIn("libuv latency-idle-0 50% [3 vs 3 runs]: p50", result.stdout)
        self.assertIn("80,000 -> 48,000 req/s, 0.60x (worse)", result.stdout)
        self.assertIn("capacity 0.60x", result.stderr)
        rows = list(csv.DictReader((self.dir / "out" / "compare.csv").open()))
        self.assertEqual([r["capacity_verdict"] for r in rows if r["capacity_verdict"]], ["worse"])

    def test_rank_test_matches_exact_mann_whitney_values(self):
        compare = load_compare()
        # Exact two-sided p-values of U (no ties), and the tie-corrected normal one.
        self.assertAlmostEqual(compare.rank_test([1, 2, 3], [4, 5, 6]), 0.1)
        self.assertAlmostEqual(compare.rank_test([1, 2, 3, 7], [4, 5, 6, 8, 9]), 1 / 9)
        self.assertAlmostEqual(compare.rank_test([1, 2, 2, 3], [2, 5, 6, 6]), 0.1015915, places=6)
        self.assertIsNone(compare.rank_test([1, 2], [3, 4, 5]))


if __name__ == "__main__":
    unittest.main()
