"""The latency scenario's logic against simulated servers whose answers are known: the
capacity lands between the last passing and the first failing rate, a step loadgen
judged itself the bottleneck of fails and says so, a server that starves connections
is measured once, and the summary shows medians with their spread. Standard library
unittest; no server runs."""

from __future__ import annotations

import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import latency  # noqa: E402


class FakeBench:
    """Answers each step from `p99_at(rate)`; `bound_above` makes loadgen judge itself
    the bottleneck from that rate up; `starved` is the probe's starved connections."""

    def __init__(self, closed_rps: float, p99_at, bound_above: float = float("inf"),
                 starved: int = 0):
        self.closed_rps, self.p99_at = closed_rps, p99_at
        self.bound_above, self.starved = bound_above, starved
        self.rates: list[tuple[str, float]] = []
        self.stopped = 0

    def start_latency_server(self, model, slow):
        return object()

    def stop_latency_server(self, server):
        self.stopped += 1

    def run_latency_step(self, server, tag, model, slow, slow_mode, label, rate_rps):
        self.rates.append((label, rate_rps))
        if label == "closed":
            return latency.Step(label, 0, {"throughput_rps": str(self.closed_rps),
                                           "starved_connections": str(self.starved),
                                           "verdict": "ok", "latency_p99_us": "900"})
        bound = rate_rps >= self.bound_above
        return latency.Step(label, rate_rps, {
            "throughput_rps": str(rate_rps), "latency_p99_us": str(self.p99_at(rate_rps)),
            "verdict": "generator-bound" if bound else "ok",
            "verdict_reason": "loop 0 used 96 % of its core" if bound else ""})


def knee(capacity: float):
    """p99 well under 1 ms below `capacity`, far over it above."""
    return lambda rate: 300 if rate <= capacity else 50_000


class MeasureModel(unittest.TestCase):
    def test_the_capacity_lands_between_the_bracketing_steps(self):
        bench = FakeBench(100_000, knee(75_000))
        result = latency.measure_model(bench, "t", "m", 0, "idle", 1000)
        capacity = float(result["capacity_rps"])
        # 70 % passes, 80 % fails; three bisections leave an eighth of the gap.
        self.assertLessEqual(capacity, 75_000)
        self.assertGreaterEqual(capacity, 75_000 - 10_000 / 8)
        self.assertIn("failed: p99 50,000 us", result["note"])
        bisects = [rate for label, rate in bench.rates if label == "bisect"]
        self.assertEqual(len(bisects), latency.BISECT_STEPS)
        self.assertTrue(all(70_000 < r < 80_000 for r in bisects), bisects)
        self.assertEqual(bench.stopped, 1)

    def test_a_step_loadgen_could_not_judge_fails_and_says_why(self):
        bench = FakeBench(100_000, knee(1e9), bound_above=85_000)
        result = latency.measure_model(bench, "t", "m", 0, "idle", 1000)
        self.assertLess(float(result["capacity_rps"]), 85_000)
        self.assertGreaterEqual(float(result["capacity_rps"]), 80_000)
        self.assertIn("generator-bound, loop 0 used 96 % of its core", result["note"])

    def test_a_capacity_loadgen_could_not_judge_at_all_is_unknown_not_zero(self):
        bench = FakeBench(100_000, knee(1e9), bound_above=0)
        result = latency.measure_model(bench, "t", "m", 0, "idle", 1000)
        self.assertEqual(result["capacity_rps"], "")
        self.assertTrue(result["note"].startswith(latency.UNJUDGED))
        self.assertFalse(latency.judged(result))
        result.update(repeat="1")
        lines = latency.summary([result], 1000, "idle")
        self.assertIn("not judged: loadgen's own lag", next(l for l in lines if " m " in l + " "))

    def test_every_step_passing_reports_the_highest(self):
        bench = FakeBench(100_000, knee(1e9))
        result = latency.measure_model(bench, "t", "m", 0, "idle", 1000)
        self.assertAlmostEqual(float(result["capacity_rps"]), 100_000 * latency.FRACTIONS[-1])
        self.assertIn("every step passed", result["note"])

    def test_a_server_that_starves_connections_is_measured_once_at_a_low_rate(self):
        bench = FakeBench(500, knee(1e9), starved=63)
        result = latency.measure_model(bench, "t", "iterative", 0, "idle", 1000)
        self.assertEqual(result["capacity_rps"], "0")
        self.assertTrue(result["note"].startswith("starves 63 of 64"))
        self.assertEqual([label for label, _ in bench.rates], ["closed", "starving"])
        self.assertEqual(bench.rates[1][1], latency.STARVING_RATE_RPS)


class Summary(unittest.TestCase):
    def test_medians_with_their_spread_in_aligned_columns(self):
        caps = []
        for repeat, (a, b) in enumerate(((90_000, 40_000), (80_000, 50_000), (70_000, 60_000)), 1):
            for slow, cap in ((0, a), (1000, b)):
                caps.append({"model": "thread", "slow_clients": str(slow), "slow_mode": "idle",
                             "slo_p99_us": "1000", "closed_loop_rps": "100000",
                             "capacity_rps": str(cap), "note": "", "repeat": str(repeat)})
                caps.append({"model": "iterative", "slow_clients": str(slow), "slow_mode": "idle",
                             "slo_p99_us": "1000", "closed_loop_rps": "500",
                             "capacity_rps": "0", "note": "starves 63 of 64 connections",
                             "repeat": str(repeat)})
        lines = latency.summary(caps, 1000, "idle")
        self.assertIn("medians of 3 repeats", lines[0])
        thread = next(l for l in lines if l.strip().startswith("thread"))
        self.assertIn("80,000 [70,000-90,000] (of 100,000)", thread)
        self.assertIn("50,000 [40,000-60,000]", thread)
        iterative = next(l for l in lines if l.strip().startswith("iterative"))
        self.assertIn("starves its connections", iterative)
        rows = [l for l in lines[1:4]]
        self.assertEqual(len({len(l) for l in rows}), 1, rows)  # aligned


if __name__ == "__main__":
    unittest.main()
