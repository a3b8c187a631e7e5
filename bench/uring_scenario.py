"""The io_uring scenario: the io_uring model against epoll, the readiness loop it is
meant to beat, as ratios measured in one run. Both models run each case once per
round, the order flipped every round (io_uring first, then epoll first), server and
loadgen pinned to CPUs of their own, for ROUNDS rounds. Each throughput ratio is
reported as the median over rounds of io_uring's req/s over epoll's in the same round,
with the rounds' range; the memory case as io_uring's peak RSS minus epoll's:

- 16 connections, 64-byte messages (target >= 1.0x);
- 16 connections beside 1,000 clients trickling one byte at a time (>= 1.1x);
- 16 connections, 64 KiB messages (>= 1.0x);
- 16 connections beside 10,000 idle clients: peak RSS (io_uring <= epoll + 8 MB).

Beside each ratio: the server's CPU per request, io_uring's over epoll's, and how many
runs loadgen judged itself the bottleneck of (its verdict column).

Run by bench/cases.py (--scenario io_uring); standard library only."""

from __future__ import annotations

from dataclasses import dataclass
from statistics import median

from scenarios import TARGET_ROUNDS, Scenario

MODELS = ("io_uring", "epoll")
ROUNDS = TARGET_ROUNDS
RSS_MARGIN_MB = 8


@dataclass
class Case:
    scenario: Scenario
    what: str
    target: float  # the least io_uring/epoll throughput ratio; 0: the RSS case


CASES = [
    Case(Scenario("uring-conns-16"), "16 connections, 64 B", 1.0),
    Case(Scenario("uring-trickle-1000", slow_clients=1000, slow_mode="trickle"),
         "16 connections + 1,000 trickling clients, 64 B", 1.1),
    Case(Scenario("uring-payload-65536", payload_bytes=65536), "16 connections, 64 KiB", 1.0),
    # The kernel completes 10,000 handshakes at once, but the server takes them one
    # accept at a time: measured once it has.
    Case(Scenario("uring-idle-10000", slow_clients=10000, warmup="10s"),
         "16 connections + 10,000 idle clients, 64 B", 0),
]


def describe() -> str:
    """What --list says of the scenario."""
    cases = "; ".join(c.what for c in CASES)
    return (f"the io_uring scenario: {' and '.join(MODELS)} alternating, {ROUNDS} rounds of "
            f"{len(CASES)} cases each ({cases}); io_uring/epoll ratios")


def run(bench, duration_s: float) -> list[str]:
    """Runs the rounds through `bench` (cases.Bench.run_case) and returns the summary."""
    rows: dict[tuple[str, str], list[dict[str, str] | None]] = {}
    total = ROUNDS * len(CASES) * len(MODELS)
    index = 0
    print(f"io_uring: {ROUNDS} alternating rounds, {total} runs of {duration_s:g} s", flush=True)
    for round_index in range(ROUNDS):
        bench.repeat = round_index + 1  # the round, in results.csv's repeat column
        order = MODELS if round_index % 2 == 0 else MODELS[::-1]
        for case in CASES:
            for model in order:
                index += 1
                row = bench.run_case(index, total, model, case.scenario, duration_s)
                ok = row is not None and row.get("outcome") == "ok"
                rows.setdefault((model, case.scenario.name), []).append(row if ok else None)
    bench.repeat = 1
    return summary(rows)


def paired(rows, name: str, key: str) -> list[tuple[float, float]]:
    """(io_uring, epoll) values of `key` round by round, leaving out rounds where either
    run failed."""
    pairs = []
    for ours, theirs in zip(rows.get((MODELS[0], name), []), rows.get((MODELS[1], name), [])):
        try:
            pairs.append((float(ours[key]), float(theirs[key])))
        except (TypeError, KeyError, ValueError):
            pass
    return pairs


def summary(rows) -> list[str]:
    lines = [f"io_uring over epoll ({ROUNDS} alternating rounds, server and loadgen pinned "
             "apart; median of the rounds' ratios, their range in brackets):"]
    for case in CASES:
        name = case.scenario.name
        pairs = paired(rows, name, "throughput_rps")
        if not pairs:
            lines.append(f"  {case.what}: not measured (a run failed)")
            continue
        ratios = [a / b for a, b in pairs if b > 0]
        ratio = median(ratios)
        text = (f"  {case.what}: {ratio:.2f}x [{min(ratios):.2f}-{max(ratios):.2f}] "
                f"({median(a for a, _ in pairs):,.0f} / {median(b for _, b in pairs):,.0f} req/s)")
        if case.target:
            text += f" (target >= {case.target:.1f}x): " + ("met" if ratio >= case.target
                                                             else "MISSED")
        lines.append(text)
        lines.append(cost_line(rows, name))
        if not case.target:
            lines.append(rss_line(paired(rows, name, "server_rss_peak_kb")))
    return lines


def cpu_per_request_us(row: dict[str, str] | None) -> float | None:
    try:
        return float(row["server_cpu_s"]) / float(row["requests"]) * 1e6
    except (TypeError, KeyError, ValueError, ZeroDivisionError):
        return None


def cost_line(rows, name: str) -> str:
    """What the throughput ratio alone does not say: the server's CPU per request, round
    by round, and how many runs loadgen judged itself the bottleneck of (on two CPUs a
    fast server can outrun it, and the ratio is then partly loadgen's)."""
    ours, theirs = rows.get((MODELS[0], name), []), rows.get((MODELS[1], name), [])
    pairs = [(cpu_per_request_us(a), cpu_per_request_us(b)) for a, b in zip(ours, theirs)]
    pairs = [(a, b) for a, b in pairs if a and b]
    bound = sum(1 for row in ours + theirs if row and row.get("verdict") == "generator-bound")
    runs = sum(1 for row in ours + theirs if row)
    verdicts = f"loadgen the bottleneck in {bound} of {runs} runs"
    if not pairs:
        return f"    server CPU per request: not measured; {verdicts}"
    ratios = [a / b for a, b in pairs]
    return (f"    server CPU per request {median(a for a, _ in pairs):.2f} / "
            f"{median(b for _, b in pairs):.2f} us = {median(ratios):.2f}x "
            f"[{min(ratios):.2f}-{max(ratios):.2f}] (lower is cheaper); {verdicts}")


def rss_line(pairs: list[tuple[float, float]]) -> str:
    if not pairs:
        return "  peak RSS with 10,000 idle clients: not measured (no server_rss_peak_kb)"
    extra_mb = [(a - b) / 1024 for a, b in pairs]
    ours, theirs = median(a for a, _ in pairs) / 1024, median(b for _, b in pairs) / 1024
    margin = median(extra_mb)
    return (f"  peak RSS with 10,000 idle clients: io_uring {ours:.1f} MB, epoll {theirs:.1f} MB, "
            f"io_uring - epoll {margin:+.1f} MB [{min(extra_mb):+.1f} to {max(extra_mb):+.1f}] "
            f"(target <= +{RSS_MARGIN_MB} MB): " + ("met" if margin <= RSS_MARGIN_MB else "MISSED"))
