"""The latency scenario: latency across load, and the capacity at a latency target.

Per model and slow-client population (0 and 1,000 idle clients; trickling ones with
--latency-trickle): a closed-loop probe measures the model's own capacity with 64
connections; open-loop steps then offer fixed fractions of it and record p99 and p99.9
from the intended send time against the achieved rate (the "hockey stick"); the
capacity at the target (p99 <= 1 ms unless --slo-p99 says otherwise) is then refined
by bisection between the two steps that bracket it. A model that starves some of its
connections (iterative, threadpool past its workers) is measured once at a low rate
and reported as starving, not as a missing point. A step loadgen judges itself the
bottleneck of is kept and marked, never read as the server's latency.

Run by bench/cases.py (--scenario latency); standard library only."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from statistics import median

CONNECTIONS = 64
FRACTIONS = (0.1, 0.5, 0.7, 0.8, 0.9, 1.0, 1.1)
BISECT_STEPS = 3
POPULATIONS = (0, 1000)
STARVING_RATE_RPS = 100  # where a model that starves connections is measured once
QUICK_MODELS = ("iterative", "fork", "thread", "libuv")
# How the notes of capacity.csv begin for a model and population whose capacity could not
# be judged (loadgen judged itself the bottleneck from the first step on: unknown, not 0)
# and for one that starves connections. plots/plot and bench/compare read capacity.csv
# through unjudged(), judged() and starves() below.
UNJUDGED = "no step at"
STARVES = "starves"


def unjudged(capacity: dict[str, str]) -> bool:
    return capacity.get("note", "").startswith(UNJUDGED)


def judged(capacity: dict[str, str]) -> bool:
    """A capacity.csv row that holds a capacity (older files wrote 0 for unjudged ones)."""
    return capacity.get("capacity_rps", "") != "" and not unjudged(capacity)


def starves(capacity: dict[str, str]) -> bool:
    return capacity.get("note", "").startswith(STARVES)


@dataclass
class Step:
    label: str
    rate_rps: float
    row: dict[str, str] | None

    def value(self, key: str) -> float | None:
        try:
            return float(self.row[key]) if self.row and self.row.get(key) else None
        except ValueError:
            return None

    def failure(self, slo_p99_us: float) -> str:
        """Why the step did not meet the target: loadgen's own verdict when it could not
        judge the server, else the p99."""
        if self.row is None:
            return "the run failed"
        if self.row.get("verdict") != "ok":
            return f"{self.row.get('verdict')}, {self.row.get('verdict_reason')}"
        p99 = self.value("latency_p99_us")
        return f"p99 {p99:,.0f} us" if p99 is not None else "no latency"

    def passes(self, slo_p99_us: float) -> bool:
        p99 = self.value("latency_p99_us")
        return (self.row is not None and self.row.get("verdict") == "ok" and p99 is not None
                and p99 <= slo_p99_us)


def run(bench, slow_mode: str, slo_p99_us: float, models: list[str], repeats: int) -> list[str]:
    """Runs the scenario through `bench` (cases.Bench.run_latency_step) `repeats` times,
    the models interleaved, and returns the summary lines; writes capacity.csv (a row per
    model, population and repeat) beside results.csv."""
    capacities = []
    total = len(models) * len(POPULATIONS) * repeats
    done = 0
    for repeat in range(1, repeats + 1):
        bench.repeat = repeat
        for slow in POPULATIONS:
            for model in models:
                done += 1
                tag = f"{done}/{total} {model} slow={slow}"
                result = measure_model(bench, tag, model, slow, slow_mode, slo_p99_us)
                result["repeat"] = str(repeat)
                capacities.append(result)
    bench.repeat = 1
    path = bench.out / "capacity.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(capacities[0].keys()))
        writer.writeheader()
        writer.writerows(capacities)
    return summary(capacities, slo_p99_us, slow_mode)


def measure_model(bench, tag: str, model: str, slow: int, slow_mode: str,
                  slo_p99_us: float) -> dict[str, str]:
    server = bench.start_latency_server(model, slow)
    result = {"model": model, "slow_clients": str(slow), "slow_mode": slow_mode,
              "slo_p99_us": f"{slo_p99_us:g}", "closed_loop_rps": "", "capacity_rps": "",
              "note": ""}
    try:
        if server is None:
            result["note"] = "the server did not start"
            return result
        probe = bench.run_latency_step(server, tag, model, slow, slow_mode, "closed", 0)
        capacity = probe.value("throughput_rps")
        starved = probe.value("starved_connections") or 0
        if not capacity and not starved:
            result["note"] = "the closed-loop probe measured nothing"
            return result
        result["closed_loop_rps"] = f"{capacity or 0:.1f}"
        if starved > 0:
            # It serves only some connections: one honest point at a low rate.
            step = bench.run_latency_step(server, tag, model, slow, slow_mode, "starving",
                                          STARVING_RATE_RPS)
            result["capacity_rps"] = "0"
            p99 = step.value("latency_p99_us")
            result["note"] = (f"{STARVES} {starved:.0f} of {CONNECTIONS} connections; at "
                              f"{STARVING_RATE_RPS} req/s "
                              + (f"p99 {p99:,.0f} us" if p99 is not None else "no request answered"))
            return result
        steps = [bench.run_latency_step(server, tag, model, slow, slow_mode,
                                        f"{fraction:.0%}", fraction * capacity)
                 for fraction in FRACTIONS]
        passing = [s for s in steps if s.passes(slo_p99_us)]
        failing = [s for s in steps if not s.passes(slo_p99_us)]
        if not passing:
            first = steps[0]
            if first.row and first.row.get("verdict") == "ok":
                result["capacity_rps"] = "0"
                result["note"] = f"p99 over {slo_p99_us:g} us already at {FRACTIONS[0]:.0%}"
            else:
                result["note"] = (f"{UNJUDGED} {FRACTIONS[0]:.0%} or above could be judged: "
                                  f"{(first.row or {}).get('verdict_reason') or 'the step failed'}")
            return result
        low = max(s.rate_rps for s in passing)
        above = [s for s in failing if s.rate_rps > low]
        if not above:
            result["capacity_rps"] = f"{low:.1f}"
            result["note"] = f"every step passed, up to {FRACTIONS[-1]:.0%} of the closed loop"
            return result
        high = min(above, key=lambda s: s.rate_rps)
        for _ in range(BISECT_STEPS):
            middle = (low + high.rate_rps) / 2
            step = bench.run_latency_step(server, tag, model, slow, slow_mode, "bisect", middle)
            if step.passes(slo_p99_us):
                low = middle
            else:
                high = step
        result["capacity_rps"] = f"{low:.1f}"
        result["note"] = (f"between {low:,.0f} (passed) and {high.rate_rps:,.0f} req/s "
                          f"(failed: {high.failure(slo_p99_us)})")
        return result
    finally:
        if server is not None:
            bench.stop_latency_server(server)


def summary(capacities: list[dict[str, str]], slo_p99_us: float, slow_mode: str) -> list[str]:
    repeats = len({c.get("repeat", "1") for c in capacities})
    lines = [f"capacity at p99 <= {slo_p99_us:g} us, {CONNECTIONS} connections, open loop "
             f"(req/s; closed-loop capacity beside it)"
             + (f"; medians of {repeats} repeats, min-max in brackets:" if repeats > 1 else ":")]
    models = list(dict.fromkeys(c["model"] for c in capacities))
    table = [["model"] + [f"{n} {slow_mode} slow" for n in POPULATIONS]]
    for model in models:
        cells = [model]
        for n in POPULATIONS:
            mine = [c for c in capacities if c["model"] == model and c["slow_clients"] == str(n)]
            runs = [c for c in mine if judged(c)]
            not_judged = sum(unjudged(c) for c in mine)
            if not runs:
                cells.append("not judged: loadgen's own lag" if not_judged else "-")
                continue
            if all(starves(c) for c in runs):
                cells.append("starves its connections")
                continue
            caps = [float(c["capacity_rps"]) for c in runs]
            closed = median(float(c["closed_loop_rps"] or 0) for c in runs)
            cell = f"{median(caps):,.0f}"
            if len(caps) > 1:
                cell += f" [{min(caps):,.0f}-{max(caps):,.0f}]"
            cells.append(f"{cell} (of {closed:,.0f})"
                         + (f", {len(runs)} of {len(mine)} judged" if not_judged else ""))
        table.append(cells)
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        lines.append("  " + row[0].ljust(widths[0])
                     + "".join("   " + cell.rjust(w) for cell, w in zip(row[1:], widths[1:])))
    notes = [f"  {c['model']} slow={c['slow_clients']}"
             + (f" repeat {c['repeat']}" if repeats > 1 else "") + f": {c['note']}"
             for c in sorted(capacities, key=lambda c: (models.index(c["model"]),
                                                        int(c["slow_clients"]), int(c["repeat"])))
             if c["note"]]
    return lines + ["notes:"] + notes
