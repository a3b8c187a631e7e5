"""The performance targets of the suite, as ratios measured in one run after the default
matrix (--no-targets skips them): loadgen on one connection against bench/floor, its CPU
per request against the libuv server's, and what 1,000 idle clients cost libuv. Each
side of a ratio is run TARGET_ROUNDS times, the two sides alternating, and the medians
compared: on a shared or virtual machine single runs of the same case differ by tens of
percent, which one run per side would report as a verdict.

Run by cases.run_matrix through the bench's own run_case; standard library only."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from statistics import median

from machine import parse_floor
from results import column_values
from scenarios import TARGET_ROUNDS, Scenario
from servers import FLOOR, Server, pinned, run_text

NOTE = f"medians of {TARGET_ROUNDS} alternating runs"


@dataclass
class Rounds:
    """What the rounds measured: loadgen's rows per case (single, base, loaded) and
    bench/floor's round trips per second against the same server."""
    rows: dict[str, list[dict[str, str]]] = field(
        default_factory=lambda: {"single": [], "base": [], "loaded": []})
    floor_rps: list[float] = field(default_factory=list)
    epoll_rps: list[float] = field(default_factory=list)

    def values(self, kind: str, key: str) -> list[float]:
        return column_values(self.rows[kind], key)


def run(bench, duration_s: float) -> list[str]:
    """Measures the targets through `bench` (cases.Bench) and returns one line per ratio."""
    if "libuv" not in bench.args.model_list:
        return ["targets: not measured (they are defined against the libuv model)"]
    rounds = measure(bench, min(duration_s, 5))
    return ping_pong_lines(rounds) + cpu_lines(rounds) + idle_clients_lines(rounds)


def measure(bench, period_s: float) -> Rounds:
    single = Scenario("target-pingpong-1conn", connections=1)
    base = Scenario("target-idle-0")
    loaded = Scenario("target-idle-1000", slow_clients=1000)
    rounds = Rounds()
    print(f"targets: {TARGET_ROUNDS} alternating rounds of libuv ping-pong (loadgen, then "
          f"bench/floor), idle-0 and idle-1000", flush=True)
    for _ in range(TARGET_ROUNDS):
        rounds.rows["single"].append(bench.run_case(0, 0, "libuv", single, period_s))
        measure_floor_round_trips(bench, rounds)
        rounds.rows["base"].append(bench.run_case(0, 0, "libuv", base, period_s))
        rounds.rows["loaded"].append(bench.run_case(0, 0, "libuv", loaded, period_s))
    return rounds


def measure_floor_round_trips(bench, rounds: Rounds) -> None:
    """bench/floor's ping-pong against a fresh libuv server, added to `rounds`."""
    server = Server("libuv", bench.server_cpu, 0)
    if server.wait_ready() is None:
        values = parse_floor(run_text(pinned([str(FLOOR), "--port", str(server.port),
                                              "--round-trips", "50000"],
                                             bench.loadgen_cpu), timeout=120))
        if "server_round_trips_per_s" in values:
            rounds.floor_rps.append(values["server_round_trips_per_s"])
        if "server_epoll_round_trips_per_s" in values:
            rounds.epoll_rps.append(values["server_epoll_round_trips_per_s"])
    server.stop()


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def ping_pong_lines(rounds: Rounds) -> list[str]:
    rps = rounds.values("single", "throughput_rps")
    floor, epoll_rps = rounds.floor_rps, rounds.epoll_rps
    if not (rps and floor):
        return ["loadgen vs floor against libuv: not measured (a run failed)"]
    ratio = median(rps) / median(floor)
    lines = [f"loadgen 1-connection req/s over bench/floor round trips/s against libuv "
             f"({NOTE}): {median(rps):,.0f} / {median(floor):,.0f} = {ratio:.2f}x "
             f"(target >= 0.90x): {verdict(ratio >= 0.9)}"]
    if epoll_rps:
        # Not a target: separates loadgen's own cost from the epoll wake-up path.
        lines.append(f"  (the same floor waiting in epoll_wait, as any event-loop client "
                     f"must: {median(epoll_rps):,.0f}/s; loadgen over it "
                     f"{median(rps) / median(epoll_rps):.2f}x)")
    return lines


def cpu_lines(rounds: Rounds) -> list[str]:
    lg_cpu = rounds.values("base", "loadgen_cpu_s")
    srv_cpu = rounds.values("base", "server_cpu_s")
    reqs = rounds.values("base", "requests")
    if not (lg_cpu and srv_cpu and reqs and len(lg_cpu) == len(srv_cpu) == len(reqs)):
        return ["loadgen vs libuv CPU per request: not measured (a run failed)"]
    ratio = sum(lg_cpu) / sum(srv_cpu)
    # From /proc the server's CPU comes in clock ticks (10 ms here), read at both
    # edges of each window: each run's figure may be off by two ticks. A cgroup's
    # counter is in nanoseconds.
    tick_s = 1 / os.sysconf("SC_CLK_TCK")
    by_proc = sum(1 for row in rounds.rows["base"] if row.get("server_cost_source") != "cgroup")
    resolution = 2 * tick_s * by_proc / sum(srv_cpu)
    return [f"loadgen CPU per request over libuv server CPU per request (idle-0, "
            f"{TARGET_ROUNDS} runs pooled): {sum(lg_cpu) / sum(reqs) * 1e6:.2f} us / "
            f"{sum(srv_cpu) / sum(reqs) * 1e6:.2f} us = {ratio:.3f}x "
            f"(target <= 1.00x; server CPU resolution +/-{resolution:.1%}): "
            + verdict(ratio <= 1.0 + resolution)]


def idle_clients_lines(rounds: Rounds) -> list[str]:
    b_rps, b_p99 = rounds.values("base", "throughput_rps"), rounds.values("base", "latency_p99_us")
    l_rps = rounds.values("loaded", "throughput_rps")
    l_p99 = rounds.values("loaded", "latency_p99_us")
    if not (b_rps and l_rps and b_p99 and l_p99):
        return ["libuv with 1000 idle clients vs none: not measured (a run failed)"]
    r1, r2 = median(l_rps) / median(b_rps), median(l_p99) / median(b_p99)
    spread = [f"{v:,.0f}" for v in b_rps + l_rps]
    return [f"libuv throughput with 1000 idle clients over none ({NOTE}): "
            f"{median(l_rps):,.0f} / {median(b_rps):,.0f} = {r1:.2f}x "
            f"(target >= 0.90x): {verdict(r1 >= 0.9)}",
            f"libuv p99 with 1000 idle clients over none ({NOTE}): "
            f"{median(l_p99):,.0f} / {median(b_p99):,.0f} us = {r2:.2f}x "
            f"(target <= 1.50x): {verdict(r2 <= 1.5)}",
            f"  (single runs of these two cases ranged over {', '.join(spread)} req/s)"]
