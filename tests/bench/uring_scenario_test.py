"""The io_uring scenario's logic against a simulated bench whose rows are known: the
models alternate (io_uring first in odd rounds, epoll first in even ones), each ratio
is the median of the rounds' ratios with their range, a round where either side failed
is left out, and the RSS case is judged as a difference in MB; and the c10k summary's
idle-CPU table. Standard library unittest; no server runs."""

from __future__ import annotations

import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import cases  # noqa: E402
import uring_scenario  # noqa: E402
from results import Results  # noqa: E402
from scenarios import Scenario  # noqa: E402


class FakeBench:
    """Answers run_case from `rps[(model, scenario)]`, one value per round (None: the
    run failed), and `rss_kb` likewise."""

    def __init__(self, rps, rss_kb):
        self.rps, self.rss_kb = rps, rss_kb
        self.calls: list[tuple[int, str, str]] = []
        self.repeat = 1

    def run_case(self, index, total, model, scenario, duration_s):
        self.calls.append((self.repeat, model, scenario.name))
        key = (model, scenario.name)
        value = self.rps[key][self.repeat - 1]
        if value is None:
            return {"outcome": "server not ready"}
        # CPU per request: 10 us for epoll, 8 us for io_uring; loadgen bound in epoll's runs.
        requests = 1000
        cpu = (8 if model == "io_uring" else 10) * requests / 1e6
        row = {"outcome": "ok", "throughput_rps": str(value), "requests": str(requests),
               "server_cpu_s": str(cpu),
               "verdict": "generator-bound" if model == "epoll" else "ok"}
        if key in self.rss_kb:
            row["server_rss_peak_kb"] = str(self.rss_kb[key][self.repeat - 1])
        return row


def line_with(lines, text):
    found = [line for line in lines if text in line]
    assert len(found) == 1, (text, lines)
    return found[0]


class UringScenario(unittest.TestCase):
    def setUp(self):
        names = [c.scenario.name for c in uring_scenario.CASES]
        self.rps = {}
        for name in names:
            self.rps[("epoll", name)] = [100.0, 100.0, 100.0]
            self.rps[("io_uring", name)] = [90.0, 120.0, 105.0]
        # The trickle case: round 2 of io_uring failed, so rounds 1 and 3 count.
        self.rps[("io_uring", "uring-trickle-1000")] = [130.0, None, 110.0]
        self.rss = {("epoll", "uring-idle-10000"): [10240, 10240, 10240],
                    ("io_uring", "uring-idle-10000"): [20480, 12288, 14336]}

    def test_alternates_and_reports_median_ratios_with_their_range(self):
        bench = FakeBench(self.rps, self.rss)
        lines = uring_scenario.run(bench, 1.0)
        rounds = uring_scenario.ROUNDS
        self.assertEqual(len(bench.calls), rounds * len(uring_scenario.CASES) * 2)
        first = [model for repeat, model, name in bench.calls if name == "uring-conns-16"]
        self.assertEqual(first, ["io_uring", "epoll", "epoll", "io_uring", "io_uring", "epoll"])
        self.assertEqual(bench.repeat, 1)
        conns = line_with(lines, "16 connections, 64 B:")
        self.assertIn("1.05x [0.90-1.20]", conns)
        self.assertIn("(target >= 1.0x): met", conns)
        trickle = line_with(lines, "1,000 trickling")
        self.assertIn("1.20x [1.10-1.30]", trickle)
        self.assertIn("met", trickle)
        cost = lines[lines.index(conns) + 1]
        self.assertIn("8.00 / 10.00 us = 0.80x [0.80-0.80]", cost)
        self.assertIn("loadgen the bottleneck in 3 of 6 runs", cost)
        # The trickle case's failed round counts as a run of neither.
        self.assertIn("in 3 of 5 runs", lines[lines.index(trickle) + 1])
        rss = line_with(lines, "peak RSS")
        # +10, +2, +4 MB: the median +4, within the 8 MB margin.
        self.assertIn("+4.0 MB [+2.0 to +10.0]", rss)
        self.assertTrue(rss.endswith("met"))

    def test_a_missed_target_says_missed(self):
        self.rps[("io_uring", "uring-payload-65536")] = [80.0, 85.0, 95.0]
        self.rss[("io_uring", "uring-idle-10000")] = [30720, 30720, 30720]
        lines = uring_scenario.run(FakeBench(self.rps, self.rss), 1.0)
        self.assertTrue(line_with(lines, "64 KiB").endswith("MISSED"))
        self.assertTrue(line_with(lines, "peak RSS").endswith("MISSED"))

    def test_a_case_with_no_complete_round_is_not_measured(self):
        self.rps[("epoll", "uring-payload-65536")] = [None, None, None]
        lines = uring_scenario.run(FakeBench(self.rps, self.rss), 1.0)
        self.assertIn("not measured", line_with(lines, "64 KiB"))


class IdleCpuTable(unittest.TestCase):
    def test_medians_and_range_per_model_and_missing_ones_said(self):
        results = Results(Path("/nonexistent/results.csv"))
        results.rows = [
            {"model": "epoll", "scenario": "idle-10000", "idle_cpu_s": "0.010"},
            {"model": "epoll", "scenario": "idle-10000", "idle_cpu_s": "0.030"},
            {"model": "epoll", "scenario": "idle-10000", "idle_cpu_s": "0.020"},
            {"model": "fork", "scenario": "idle-10000", "idle_cpu_s": ""},
        ]
        scenario = Scenario("idle-10000", slow_clients=10000, idle_cpu_window_s=10)
        lines = cases.idle_cpu_lines(results, ["epoll", "fork"], [scenario, Scenario("idle-0")])
        self.assertIn("0.020 s (runs 0.010-0.030)", line_with(lines, "epoll"))
        self.assertIn("not measured", line_with(lines, "fork"))
        self.assertEqual(cases.idle_cpu_lines(results, ["epoll"], [Scenario("idle-0")]), [])


if __name__ == "__main__":
    unittest.main()
