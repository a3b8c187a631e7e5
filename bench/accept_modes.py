"""The accept scenario: how the workers of prefork and reactors share their listener
(echo-server --accept shared, reuseport, exclusive), side by side.

Each model that takes --accept runs with 2 and 4 workers in each mode under two loads:
churn (16 connections, one request each, then a new connection: a stream of connects)
and steady (64 connections held for the whole run). Per case the server's summary says
how many connections each worker accepted (per_worker=) and how often a worker woke for
a connection another one took (empty_wakeups=); loadgen measures throughput and
connect latency. From the counts: each worker's share and Jain's fairness index,
(sum x)^2 / (n * sum x^2), 1 when every worker took as many and 1/n when one took all.

The cases are Scenario rows run by the bench's model x scenario loop (cases.run_matrix,
which also interleaves --repeat); this module names them, reads the summary's counts into
each row (cases.Bench.measure_case calls server_columns) and writes the summary table.
plots/plot draws them (accept_plots). Standard library only."""

from __future__ import annotations

import re
from dataclasses import dataclass
from statistics import median

WORKERS = (2, 4)
STEADY_CONNECTIONS = 64
CHURN_CONNECTIONS = 16
DURATION = "2s"  # measured window per case unless --duration says otherwise
WARMUP = "500ms"
PREFIX = "accept-"


@dataclass(frozen=True)
class Case:
    """What one accept scenario name stands for."""
    load: str  # churn or steady
    workers: int
    mode: str


def scenario_name(case: Case) -> str:
    return f"{PREFIX}{case.load}-{case.workers}w-{case.mode}"


def parse_name(name: str) -> Case | None:
    match = re.fullmatch(re.escape(PREFIX) + r"(churn|steady)-(\d+)w-(\w+)", name)
    return Case(match.group(1), int(match.group(2)), match.group(3)) if match else None


def cases(modes: list[str]) -> list[Case]:
    """Every case, the modes innermost so that the modes of one load and worker count
    run back to back."""
    return [Case(load, workers, mode) for load in ("churn", "steady") for workers in WORKERS
            for mode in modes]


def jain_index(counts: list[float]) -> float | None:
    """(sum x)^2 / (n * sum x^2); None when nothing was counted."""
    squares = sum(x * x for x in counts)
    return sum(counts) ** 2 / (len(counts) * squares) if counts and squares else None


def server_columns(summary: str) -> dict[str, str]:
    """results.csv's server columns from a server's summary line: per_worker (counts
    joined by ';'), empty_wakeups and the fairness index of the counts; empty cells for
    what the summary does not have (a model without workers)."""
    columns = {"server_per_worker": "", "server_empty_wakeups": "", "jain_index": ""}
    per_worker = re.search(r"\bper_worker=([\d,]+)", summary)
    if per_worker:
        counts = [int(x) for x in per_worker.group(1).split(",")]
        columns["server_per_worker"] = ";".join(str(c) for c in counts)
        jain = jain_index(counts)
        columns["jain_index"] = f"{jain:.3f}" if jain is not None else ""
    empty = re.search(r"\bempty_wakeups=(\d+)", summary)
    if empty:
        columns["server_empty_wakeups"] = empty.group(1)
    return columns


def shares(row: dict[str, str]) -> list[float]:
    """Each worker's share of the connections of one row, in %, largest first."""
    counts = [float(x) for x in (row.get("server_per_worker") or "").split(";") if x]
    total = sum(counts)
    return sorted((100 * c / total for c in counts), reverse=True) if total else []


def number(row: dict[str, str], key: str) -> float | None:
    try:
        return float(row[key]) if row.get(key) else None
    except ValueError:
        return None


def grouped(rows: list[dict[str, str]]) -> dict[tuple[str, str, int, str], list[dict[str, str]]]:
    """The accept rows with a throughput, by (model, load, workers, mode), in run order."""
    groups: dict[tuple[str, str, int, str], list[dict[str, str]]] = {}
    for row in rows:
        case = parse_name(row.get("scenario", ""))
        if case and number(row, "throughput_rps") is not None:
            groups.setdefault((row["model"], case.load, case.workers, case.mode), []).append(row)
    return groups


def spread(values: list[float], fmt: str) -> str:
    """The median, and min-max in brackets when there are repeats."""
    if not values:
        return "-"
    text = format(median(values), fmt)
    return text + (f" [{format(min(values), fmt)}-{format(max(values), fmt)}]"
                   if len(values) > 1 else "")


def summary_lines(rows: list[dict[str, str]]) -> list[str]:
    """The accept table: per model, load, workers and mode, the medians (min-max over
    repeats in brackets) of throughput, connect p50/p99, Jain's index, the largest
    worker's share and the empty wake-ups."""
    groups = grouped(rows)
    if not groups:
        return []
    repeats = max(len(g) for g in groups.values())
    lines = ["", "how the workers share the listener (--accept); "
             + (f"medians of {repeats} repeats, min-max in brackets" if repeats > 1
                else "single runs") + ":",
             "  jain: Jain's fairness index of the connections each worker accepted (1: even, "
             "1/workers: one took all); largest: the busiest worker's share; per worker: "
             "each one's share in the first run, largest first; empty: wake-ups that found "
             "nothing to accept"]
    header = ["model", "load", "workers", "mode", "req/s", "connect p50 us", "connect p99 us",
              "jain", "largest %", "per worker % (run 1)", "empty"]
    table = [header]
    for (model, load, workers, mode), runs in groups.items():
        table.append([
            model, load, str(workers), mode,
            spread([number(r, "throughput_rps") for r in runs], ",.0f"),
            spread([v for r in runs if (v := number(r, "connect_p50_us")) is not None], ",.0f"),
            spread([v for r in runs if (v := number(r, "connect_p99_us")) is not None], ",.0f"),
            spread([v for r in runs if (v := number(r, "jain_index")) is not None], ".2f"),
            spread([s[0] for r in runs if (s := shares(r))], ".0f"),
            "/".join(f"{s:.0f}" for s in shares(runs[0])) or "-",
            spread([v for r in runs if (v := number(r, "server_empty_wakeups")) is not None],
                   ".0f")])
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for r in table:
        lines.append("  " + "  ".join(cell.ljust(w) if i < 4 else cell.rjust(w)
                                      for i, (cell, w) in enumerate(zip(r, widths))))
    return lines
