"""The generator scenario: what loadgen itself costs and whether it keeps its schedule,
as ratios measured in one run (medians of alternating rounds, server on one CPU and
loadgen on the other):

- open loop from one loadgen thread at 1.2x the epoll model's closed-loop capacity,
  and loadgen's own send lag there;
- loadgen's CPU per request in open loop at 80 % of a server's capacity over its CPU
  per request in closed loop at saturation (epoll over tcp, libuv over http);
- its CPU per request at 10,000 req/s with the default timer slack over the same with
  no slack (one timer per wake), and what the slack costs in p50;
- p99.9 with --server-pid over without it, as the bench samples servers, and with the
  /proc walks loadgen falls back on.

Run by bench/cases.py (--scenario generator); standard library only."""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import median
from typing import Callable

from results import column_values

CONNECTIONS = 50
LOW_RATE_RPS = 10_000
SAMPLING_CONNECTIONS = 16
SAMPLING_IDLE = 300  # the fork model's idle clients: 300 processes to walk in /proc


@dataclass
class Case:
    """One loadgen run: its name, the server it loads and loadgen's extra flags (a
    function of this round's closed-loop capacity, for the rates that depend on it)."""
    name: str
    model: str
    protocol: str
    args: Callable[[float], list[str]]
    connections: int = CONNECTIONS
    slow_clients: int = 0
    sampling: str = "cgroup"  # cgroup (the bench's way), proc (loadgen's fallback), none


@dataclass
class Results:
    rows: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    def add(self, name: str, row: dict[str, str] | None) -> None:
        self.rows.setdefault(name, []).append(row or {})

    def values(self, name: str, key: str) -> list[float]:
        return column_values(self.rows.get(name, []), key)

    def cpu_per_request_us(self, name: str) -> list[float]:
        out = []
        for row in self.rows.get(name, []):
            try:
                out.append(float(row["loadgen_cpu_s"]) / float(row["requests"]) * 1e6)
            except (KeyError, TypeError, ValueError, ZeroDivisionError):
                pass
        return out


def spread(values: list[float], fmt: str = ",.1f") -> str:
    return f"{min(values):{fmt}}-{max(values):{fmt}}" if values else "-"


def ratio_line(what: str, top: list[float], bottom: list[float], target: str,
               ok: Callable[[float], bool], fmt: str = ",.1f", unit: str = "") -> str:
    if not top or not bottom:
        return f"{what}: not measured (a run failed)"
    ratio = median(top) / median(bottom)
    return (f"{what}: {median(top):{fmt}}{unit} / {median(bottom):{fmt}}{unit} = {ratio:.2f}x "
            f"(target {target}; runs {spread(top, fmt)} and {spread(bottom, fmt)}): "
            + ("met" if ok(ratio) else "MISSED"))


def run(bench, server_class, rounds: int, duration_s: float) -> list[str]:
    """Runs the scenario through `bench` (cases.Bench: run_generator_case) and returns
    its summary lines."""
    results = Results()
    closed = {"epoll": 0.0, "libuv": 0.0}

    def open_loop(share: float, model: str, extra: list[str] = ()) -> Callable[[float], list[str]]:
        return lambda capacity: ["--rate", f"{share * capacity:.0f}", *extra]

    def fixed(args: list[str]) -> Callable[[float], list[str]]:
        return lambda _capacity: list(args)

    per_server = {
        ("epoll", "tcp"): [
            Case("epoll-open-120pct", "epoll", "tcp",
                 open_loop(1.2, "epoll", ["--max-inflight", "1000", "--timeout", "30s"])),
            Case("epoll-open-80pct", "epoll", "tcp", open_loop(0.8, "epoll")),
            Case("epoll-open-10k-noslack", "epoll", "tcp",
                 fixed(["--rate", str(LOW_RATE_RPS), "--timer-slack", "0"])),
            Case("epoll-open-10k", "epoll", "tcp", fixed(["--rate", str(LOW_RATE_RPS)])),
        ],
        ("libuv", "http"): [
            Case("libuv-http-open-80pct", "libuv", "http", open_loop(0.8, "libuv")),
            Case("libuv-http-open-10k-noslack", "libuv", "http",
                 fixed(["--rate", str(LOW_RATE_RPS), "--timer-slack", "0"])),
            Case("libuv-http-open-10k", "libuv", "http", fixed(["--rate", str(LOW_RATE_RPS)])),
        ],
    }
    sampling = []
    for model, slow in (("epoll", 0), ("fork", SAMPLING_IDLE)):
        for how in ("none", "cgroup", "proc"):
            sampling.append(Case(f"sampling-{model}-{how}", model, "tcp", fixed([]),
                                 connections=SAMPLING_CONNECTIONS, slow_clients=slow,
                                 sampling=how))
    total = rounds * (sum(1 + len(c) for c in per_server.values()) + len(sampling))
    index = 0
    print(f"generator: {rounds} alternating rounds, {total} runs of {duration_s:g} s", flush=True)
    for round_index in range(rounds):
        flip = round_index % 2 == 1
        for (model, protocol), cases in per_server.items():
            # The closed loop first: the open-loop rates are shares of what it measured.
            index += 1
            row = bench.run_generator_case(
                f"{index}/{total}", Case(f"{model}-{'http-' if protocol == 'http' else ''}closed",
                                         model, protocol, fixed([])), [])
            results.add(f"{model}-{protocol}-closed", row)
            try:
                closed[model] = float(row["throughput_rps"])
            except (KeyError, TypeError, ValueError):
                closed[model] = 0
            for case in (cases[::-1] if flip else cases):
                index += 1
                row = None
                if closed[model] > 0:
                    row = bench.run_generator_case(f"{index}/{total}", case,
                                                   case.args(closed[model]))
                results.add(case.name, row)
        for case in (sampling[::-1] if flip else sampling):
            index += 1
            results.add(case.name, bench.run_generator_case(f"{index}/{total}", case, []))
    return summary(results, rounds)


def summary(results: Results, rounds: int) -> list[str]:
    note = f"medians of {rounds} alternating rounds, server on CPU 0, loadgen (1 thread) on CPU 1"
    lines = [f"generator: loadgen's own cost and schedule ({note})"]

    capacity = results.values("epoll-tcp-closed", "throughput_rps")
    offered = results.values("epoll-open-120pct", "offered_rps")
    lag = results.values("epoll-open-120pct", "generator_lag_p99_us")
    total_lag = results.values("epoll-open-120pct", "send_lag_p99_us")
    achieved = results.values("epoll-open-120pct", "throughput_rps")
    cpu = results.values("epoll-open-120pct", "loop_cpu_max_pct")
    if capacity and offered and lag:
        # The offered rate is 1.2x this round's capacity by construction; what is
        # measured is whether one loadgen thread kept that schedule.
        ratio = median(offered) / median(capacity)
        ok = ratio >= 1.2 and median(lag) < 100
        lines.append(
            f"open loop at {ratio:.2f}x epoll's closed-loop capacity ({median(offered):,.0f} over "
            f"{median(capacity):,.0f} req/s, {CONNECTIONS} connections, one loadgen thread): "
            f"loadgen's own send lag p99 {median(lag):,.1f} us (target < 100 us; runs "
            f"{spread(lag)}): " + ("met" if ok else "MISSED"))
        lines.append(f"  there: its loop used {median(cpu):.0f} % of its core; send lag p99 with "
                     f"waits for the server {median(total_lag):,.1f} us; achieved "
                     f"{median(achieved):,.0f} req/s; verdicts "
                     + ", ".join(r.get("verdict", "-") or "-"
                                 for r in results.rows.get("epoll-open-120pct", [])))
    else:
        lines.append("open loop at 1.2x epoll's capacity: not measured (a run failed)")
    for model, protocol, prefix in (("epoll", "tcp", "epoll"), ("libuv", "http", "libuv-http")):
        lines.append(ratio_line(
            f"{model} {protocol}: loadgen CPU per request, open loop at 80 % of capacity over "
            "closed loop at saturation", results.cpu_per_request_us(f"{prefix}-open-80pct"),
            results.cpu_per_request_us(f"{model}-{protocol}-closed"), "<= 1.15x",
            lambda r: r <= 1.15, ",.2f", " us"))
        slack = results.cpu_per_request_us(f"{prefix}-open-10k")
        exact = results.cpu_per_request_us(f"{prefix}-open-10k-noslack")
        lines.append(ratio_line(
            f"{model} {protocol}: loadgen CPU per request at {LOW_RATE_RPS:,} req/s, default "
            "timer slack over none", slack, exact, "<= 0.50x", lambda r: r <= 0.5, ",.2f", " us"))
        p50_slack = results.values(f"{prefix}-open-10k", "latency_p50_us")
        p50_exact = results.values(f"{prefix}-open-10k-noslack", "latency_p50_us")
        if p50_slack and p50_exact:
            lines.append(f"  what the slack costs there: p50 {median(p50_slack):,.1f} us against "
                         f"{median(p50_exact):,.1f} us without it "
                         f"({median(p50_slack) - median(p50_exact):+,.1f} us)")
    for model in ("epoll", "fork"):
        none = results.values(f"sampling-{model}-none", "latency_p999_us")
        for how, target in (("cgroup", True), ("proc", False)):
            sampled = results.values(f"sampling-{model}-{how}", "latency_p999_us")
            what = (f"{model}, {SAMPLING_CONNECTIONS} connections"
                    + (f" + {SAMPLING_IDLE} idle clients" if model == "fork" else "")
                    + f": p99.9 with --server-pid ({how}) over without")
            if target:
                lines.append(ratio_line(what, sampled, none, "<= 1.10x", lambda r: r <= 1.1,
                                        ",.0f", " us"))
            elif sampled and none:
                lines.append(f"  {what}: {median(sampled) / median(none):.2f}x (the /proc fallback, "
                             "for comparison; not a target)")
    return lines
