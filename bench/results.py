"""results.csv, the one table of a run: a row per case, loadgen's columns (learned from
the first CSV loadgen writes) followed by the bench's own, kept in memory and written
whole at each new row; and the ways the bench reads it back (a case's repeats, their
medians, one row in a line).

Standard library only."""

from __future__ import annotations

import csv
from pathlib import Path
from statistics import median

EXTRA_COLUMNS = ["run_id", "model", "scenario", "floor_rtt_us", "git_rev", "outcome",
                 "server_dropped", "kernel_udp_rcvbuf_errors", "repeat", "server_args",
                 "server_per_worker", "server_empty_wakeups", "jain_index", "idle_cpu_s",
                 "server_evicted"]


def describe_result(row: dict[str, str]) -> str:
    """'45,210 req/s, p99 812 us'; a p99 of '-' when no request completed."""
    rps, p99 = row.get("throughput_rps") or "", row.get("latency_p99_us") or ""
    if not rps:
        return "no result"
    p99_text = f"{float(p99):,.0f} us" if p99 else "- (none completed)"
    return f"{float(rps):,.0f} req/s, p99 {p99_text}"


def column_values(rows: list[dict[str, str] | None], key: str) -> list[float]:
    """The numbers in one column of `rows`, leaving out rows without it (or without a
    number in it) and missing rows."""
    out = []
    for row in rows:
        try:
            out.append(float(row[key]))
        except (KeyError, TypeError, ValueError):
            pass
    return out


class Results:
    """The rows of one run's results.csv at `path`, in the order the cases ran."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: list[dict[str, str]] = []
        self.header: list[str] = []

    def blank_row(self, cells: dict[str, str]) -> dict[str, str]:
        """A row with every loadgen column empty but `cells`, for a case loadgen wrote
        no row for (or a generator that writes none of its own)."""
        row = {name: "" for name in self.header}
        row.update(cells)
        return row

    def read_case_row(self, path: Path) -> dict[str, str] | None:
        try:
            with path.open(newline="") as f:
                reader = csv.DictReader(f)
                rows = list(reader)
                if not self.header and reader.fieldnames:
                    self.header = list(reader.fieldnames)
                return rows[-1] if rows else None
        except OSError:
            return None

    def append_row(self, row: dict[str, str]) -> None:
        """Adds a row and writes results.csv again, whole: loadgen's columns are known
        only from its first CSV, so rows of cases that failed before any loadgen run
        would otherwise be written under a header without them, and so would every
        row after them. A few hundred rows at most: rewriting costs nothing."""
        self.rows.append(row)
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.header + EXTRA_COLUMNS,
                                    extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.rows)

    def case_rows(self, model: str, scenario: str) -> list[dict[str, str]]:
        """Every repeat of one case that measured a throughput."""
        return [r for r in self.rows if r["model"] == model and r["scenario"] == scenario
                and r.get("throughput_rps")]

    def case_median(self, model: str, scenario: str, key: str) -> float | None:
        values = [float(r[key]) for r in self.case_rows(model, scenario) if r.get(key)]
        return median(values) if values else None
