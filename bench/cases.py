"""Case running: one bench run's state (Bench) and its cases, each a fresh server and
one loadgen run recorded as a results.csv row: a matrix case, a generator-scenario
run, a latency step. The scenario modules (latency, generator, targets, http_scenario,
chat_scenario)
run their cases through these methods. Below the class: the whole run (run), the
model x scenario loop (run_matrix) and the matrix's summary table.

One case at a time, on the calling thread; standard library only."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from statistics import median

import accept_modes
import chat_scenario
import generator as generator_scenario
import http_scenario
import latency
import machine
import report
import servers
import targets
import uring_scenario
from results import Results, describe_result
from scenarios import HTTP_ROUNDS, TARGET_ROUNDS, Scenario, parse_duration_s
from servers import (LOADGEN, MPI_ENV, PLOT, SERVER_ARGS, TARGET, Server, cpu_count,
                     max_connections_guard, pinned, udp_rcvbuf_errors, under_mpirun)


def with_error(outcome: str, error: str | None) -> str:
    """A case's outcome once `error` (e.g. the server's bad exit) is added to it."""
    if not error:
        return outcome
    return error if outcome == "ok" else f"{outcome}; {error}"


class Bench:
    """The run: its folder, CPUs, floor and rows, and the one-case steps of every
    scenario. `repeat` is the repeat running now (set by the loops that repeat)."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.out: Path = args.out
        self.cpus = cpu_count()
        self.server_cpu = 0 if self.cpus >= 2 else None
        self.loadgen_cpu = 1 if self.cpus >= 2 else None
        self.run_id = self.out.name
        self.git_rev = machine.git_revision()
        self.floor: dict[str, float] = {}
        self.results = Results(self.out / "results.csv")
        self.repeat = 1  # which repeat of the matrix is running (--repeat)
        self.step_index = 0  # latency steps so far, for their file names

    def floor_rtt_us(self) -> str:
        key = "floor_rtt_2cpu_mean_us" if self.cpus >= 2 else "floor_rtt_1cpu_mean_us"
        return f"{self.floor[key]:.2f}" if key in self.floor else ""

    # --- one case ----------------------------------------------------------------
    def run_case(self, index: int, total: int, model: str, scenario: Scenario,
                 duration_s: float, label: str | None = None) -> dict[str, str] | None:
        """Case `index` of `total` (total 0: a target's run) against a fresh server;
        records, prints and returns its row."""
        case = f"{model} {scenario.name}"
        tag = f"[{index}/{total}] {case}" if total else f"[target] {case}"
        cap = 0 if scenario.protocol == "udp" else \
            max_connections_guard(model, scenario.slow_clients + scenario.connections + 64)
        server_cpu = self.server_cpu if scenario.pinned else None
        server = Server(model, server_cpu, cap, scenario.protocol, scenario.server_flags)
        error = server.wait_ready()
        if error is None:
            outcome, row = self.measure_case(server, model, scenario, duration_s, label)
            if cap and cap < scenario.slow_clients + scenario.connections and outcome == "ok":
                outcome = f"ok (server capped at --max-connections {cap})"
        else:
            server.stop()
            outcome, row = error, None
        row = self.record_row(row, {"label": label or scenario.name,
                                    "connections": str(scenario.connections),
                                    "slow_clients": str(scenario.slow_clients),
                                    "slow_mode": scenario.slow_mode,
                                    "payload_bytes": str(scenario.payload_bytes)},
                              model, scenario.name, outcome)
        shown = describe_result(row)
        extra = "" if outcome == "ok" else f"  [{outcome}]"
        starved = row.get("starved_connections") or ""
        if starved and starved != "0":
            extra += f"  starved {starved}/{scenario.connections}"
        print(f"{tag} slow={scenario.slow_clients}: {shown}{extra}", flush=True)
        return row

    def measure_case(self, server: Server, model: str, scenario: Scenario, duration_s: float,
                     label: str | None) -> tuple[str, dict[str, str] | None]:
        """loadgen against a ready server, which is stopped after; (outcome, row or None)."""
        loadgen_cpu = self.loadgen_cpu if scenario.pinned else None
        warmup = scenario.warmup or self.args.warmup
        # Repeats after the first get a suffix; the first keeps the plain name the
        # plots read its histogram by.
        suffix = f"-r{self.repeat}" if self.repeat > 1 else ""
        csv_path = self.out / "cases" / f"{model}-{scenario.name}{suffix}.csv"
        hist_path = self.out / "histograms" / f"{model}-{scenario.name}{suffix}.hgrm"
        cmd = self.loadgen_cmd(server.port, scenario.protocol, scenario.connections,
                               duration_s, warmup, label or scenario.name, csv_path,
                               hist_path, server.sampling_args())
        cmd += scenario.loadgen_flags()
        cmd = self.under_mpirun(cmd, scenario.ranks)
        budget_s = duration_s + parse_duration_s(warmup) + 300
        idle_cpu_s = self.measure_idle_cpu(server, model, scenario, warmup, suffix)
        drops_before = udp_rcvbuf_errors()
        outcome, row = self.run_loadgen(pinned(cmd, loadgen_cpu), csv_path, budget_s)
        drops_after = udp_rcvbuf_errors()
        if row is not None and scenario.idle_cpu_window_s:
            row["idle_cpu_s"] = idle_cpu_s
        server.note_children()
        stop_error, summary = server.stop()
        if row is not None:
            # How the connections spread over the workers, for a model that has them.
            row.update(accept_modes.server_columns(summary))
        if scenario.protocol == "udp" and row is not None:
            # Who lost the datagrams loadgen counts as lost: the server's own count
            # of echoes it dropped, and the kernel's full-buffer drops (any socket).
            dropped = re.search(r"\bdropped=(\d+)", summary)
            row["server_dropped"] = dropped.group(1) if dropped else ""
            if drops_before is not None and drops_after is not None:
                row["kernel_udp_rcvbuf_errors"] = str(drops_after - drops_before)
        return with_error(outcome, stop_error), row

    def under_mpirun(self, cmd: list[str], ranks: int = 0) -> list[str]:
        """A whole loadgen command as mpirun runs it: `ranks` ranks (a scale-out case), or
        --mpi-np's; as it is when neither asks."""
        return under_mpirun(cmd, ranks or self.args.mpi_np, self.args.hostfile)

    def measure_idle_cpu(self, server: Server, model: str, scenario: Scenario, warmup: str,
                         suffix: str) -> str:
        """The server's CPU seconds over the scenario's quiet run (idle_cpu_window_s with
        its slow clients connected and nothing else, after the same warm-up, measured as
        every case measures the server); '' when it has none or the run failed."""
        if not scenario.idle_cpu_window_s or not scenario.slow_clients:
            return ""
        label = f"{scenario.name}-quiet"
        csv_path = self.out / "cases" / f"{model}-{label}{suffix}.csv"
        cmd = self.loadgen_cmd(server.port, scenario.protocol, 0, scenario.idle_cpu_window_s,
                               warmup, label, csv_path, None, server.sampling_args())
        cmd += ["--slow-clients", str(scenario.slow_clients), "--slow-mode", scenario.slow_mode]
        budget_s = scenario.idle_cpu_window_s + parse_duration_s(warmup) + 300
        loadgen_cpu = self.loadgen_cpu if scenario.pinned else None
        outcome, row = self.run_loadgen(pinned(cmd, loadgen_cpu), csv_path, budget_s)
        if outcome != "ok" or row is None:
            print(f"  {model} {label}: no idle CPU ({outcome})", file=sys.stderr, flush=True)
            return ""
        return row.get("server_cpu_s") or ""

    def run_loadgen(self, cmd: list[str], csv_path: Path,
                    budget_s: float) -> tuple[str, dict[str, str] | None]:
        """Runs one loadgen command; returns (outcome, its CSV row or None)."""
        env = dict(os.environ, **MPI_ENV) if "mpirun" in cmd else None
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=budget_s,
                                    env=env)
        except subprocess.TimeoutExpired:
            return f"loadgen did not finish within {budget_s:.0f} s", None
        outcome = "ok"
        if result.returncode != 0:
            outcome = f"loadgen exit {result.returncode}: " + \
                (result.stderr.strip().splitlines() or ["?"])[-1][:200]
        return outcome, self.results.read_case_row(csv_path)

    def loadgen_cmd(self, port: int, protocol: str, connections: int, duration_s: float,
                    warmup: str, label: str, csv_path: Path, hist_path: Path | None,
                    sampling: list[str]) -> list[str]:
        """The loadgen command every case starts from (its CSV file emptied first)."""
        csv_path.unlink(missing_ok=True)
        remote = [] if TARGET["host"] == "127.0.0.1" else ["--allow-remote"]
        cmd = [str(LOADGEN), "--host", TARGET["host"], *remote, "--port", str(port),
               "--protocol", protocol,
               "--connections", str(connections), "--duration", f"{duration_s:g}s",
               "--warmup", warmup, *sampling, "--label", label, "--csv", str(csv_path)]
        return cmd + (["--histogram", str(hist_path)] if hist_path else [])

    def record_row(self, row: dict[str, str] | None, blank: dict[str, str], model: str,
                   scenario: str, outcome: str) -> dict[str, str]:
        """Adds the bench's columns to a case's row (a blank one with `blank`'s cells when
        loadgen wrote none), appends it to results.csv and returns it."""
        if row is None:
            row = self.results.blank_row(blank)
        row.update({"run_id": self.run_id, "model": model, "scenario": scenario,
                    "floor_rtt_us": self.floor_rtt_us(), "git_rev": self.git_rev,
                    "outcome": outcome, "repeat": str(self.repeat),
                    "server_args": shlex.join(SERVER_ARGS.get(model, []))})
        self.results.append_row(row)
        return row

    # --- the generator scenario: loadgen's own cost and schedule ----------------------
    def run_generator_case(self, tag: str, case: "generator_scenario.Case",
                           extra: list[str]) -> dict[str, str] | None:
        """One loadgen run of the generator scenario against a fresh server; appends its
        row to results.csv and returns it (None when the run failed)."""
        cap = max_connections_guard(case.model, case.slow_clients + case.connections + 64)
        server = Server(case.model, self.server_cpu, cap, case.protocol)
        error = server.wait_ready()
        row, outcome = None, error or "ok"
        if error is None:
            csv_path = self.out / "cases" / f"{case.name}-{tag.split('/')[0]}.csv"
            sampling = {"cgroup": server.sampling_args(),
                        "proc": ["--server-pid", str(server.proc.pid)]}.get(case.sampling, [])
            cmd = self.loadgen_cmd(server.port, case.protocol, case.connections,
                                   self.args.duration_s, self.args.warmup, case.name, csv_path,
                                   None, sampling) + ["--threads", "1"]
            if case.slow_clients:
                cmd += ["--slow-clients", str(case.slow_clients)]
            budget_s = self.args.duration_s + parse_duration_s(self.args.warmup) + 120
            outcome, row = self.run_loadgen(
                pinned(self.under_mpirun(cmd + extra), self.loadgen_cpu), csv_path, budget_s)
            stop_error, _ = server.stop()
            outcome = with_error(outcome, stop_error)
        else:
            server.stop()
        shown = row
        row = self.record_row(row, {"label": case.name, "protocol": case.protocol,
                                    "connections": str(case.connections)},
                              case.model, "generator", outcome)
        extra_text = "" if outcome == "ok" else f"  [{outcome}]"
        verdict = row.get("verdict") or ""
        if verdict and verdict != "ok":
            extra_text += f"  {verdict}"
        print(f"[{tag}] {case.name}: {describe_result(row)}{extra_text}", flush=True)
        return shown if outcome == "ok" else None

    # --- the latency scenario: latency across load, capacity at a target --------------
    def start_latency_server(self, model: str, slow: int) -> "Server | None":
        cap = max_connections_guard(model, slow + latency.CONNECTIONS + 64)
        server = Server(model, self.server_cpu, cap)
        error = server.wait_ready()
        if error:
            print(f"  {model}: {error}", file=sys.stderr, flush=True)
            server.stop()
            return None
        return server

    def stop_latency_server(self, server: "Server") -> None:
        stop_error, _ = server.stop()
        if stop_error:
            print(f"  {stop_error}", file=sys.stderr, flush=True)

    def run_latency_step(self, server: "Server", tag: str, model: str, slow: int,
                         slow_mode: str, label: str, rate_rps: float) -> "latency.Step":
        """One step against a running server (rate 0: the closed-loop probe)."""
        scenario = f"latency-{slow_mode}-{slow}"
        self.step_index += 1
        case = f"{model}-{scenario}-{self.step_index:03d}"
        csv_path = self.out / "cases" / f"{case}.csv"
        cmd = self.loadgen_cmd(server.port, "tcp", latency.CONNECTIONS, self.args.duration_s,
                               self.args.warmup, label, csv_path,
                               self.out / "histograms" / f"{case}.hgrm", server.sampling_args())
        if slow:
            cmd += ["--slow-clients", str(slow), "--slow-mode", slow_mode]
        if rate_rps > 0:
            cmd += ["--rate", f"{rate_rps:.1f}"]
        budget_s = self.args.duration_s + parse_duration_s(self.args.warmup) + 120
        outcome, row = self.run_loadgen(pinned(self.under_mpirun(cmd), self.loadgen_cpu),
                                        csv_path, budget_s)
        shown = row
        row = self.record_row(row, {"label": label, "connections": str(latency.CONNECTIONS),
                                    "slow_clients": str(slow)}, model, scenario, outcome)
        verdict = row.get("verdict") or ""
        mark = "" if verdict in ("", "ok") else f"  {verdict}"
        offered = f"{rate_rps:,.0f} offered" if rate_rps > 0 else "closed loop"
        print(f"[{tag}] {label:>8} {offered:>16}: {describe_result(row)}{mark}"
              + ("" if outcome == "ok" else f"  [{outcome}]"), flush=True)
        return latency.Step(label, rate_rps, shown if outcome == "ok" else None)


# --- the whole run -------------------------------------------------------------------
def run(bench: Bench) -> int:
    """Runs the scenario kind the command line chose, writes summary.txt, the plots
    (where the kind has them) and index.html; returns the exit code."""
    args, first = bench.args, bench.args.scenarios[0]
    prepare(bench)
    if first.name == "latency":
        lines = latency.run(bench, "trickle" if args.latency_trickle else "idle",
                            args.slo_p99_us, args.model_list, args.repeat)
    elif first.name == "generator":
        lines = generator_scenario.run(bench, Server, TARGET_ROUNDS, args.duration_s)
    elif first.name == "io_uring":
        lines = uring_scenario.run(bench, args.duration_s)
    elif first.protocol == "http":
        lines = http_scenario.run(bench, args.duration_s)
    elif first.name == "chat":
        lines = chat_scenario.run(bench, args.duration_s)
    else:
        lines = run_matrix(bench)
    text = "\n".join([""] + lines) + "\n"
    print(text, flush=True)
    (bench.out / "summary.txt").write_text(text)
    if first.protocol in ("http", "udp"):
        print(f"plots: none for the {first.protocol} scenario (summary.txt has its table)",
              flush=True)
    elif first.ranks:
        print("plots: none for the scale-out scenario (summary.txt has its table)", flush=True)
    elif first.name not in ("generator", "io_uring") and not args.no_plots:
        # (those two: their ratios are their whole result)
        subprocess.run([str(PLOT), str(bench.out / "results.csv"), str(bench.out / "plots")])
    index = report.write_index(bench.out, f"bench run {bench.run_id}", args.command)
    print(f"report: {index}", flush=True)
    return 0


def prepare(bench: Bench) -> None:
    """The run folder, what the run will do, the floor, the cgroup probe, machine.txt."""
    args, first = bench.args, bench.args.scenarios[0]
    bench.out.mkdir(parents=True, exist_ok=True)
    (bench.out / "cases").mkdir(exist_ok=True)
    (bench.out / "histograms").mkdir(exist_ok=True)
    if first.name in ("generator", "latency", "io_uring"):
        print(f"bench: the {first.name} scenario, {args.duration_s:g} s runs, results in "
              f"{bench.out}", flush=True)
    else:
        total = (HTTP_ROUNDS * (len(args.model_list) + 1) * 2 if first.protocol == "http"
                 else ((len(chat_scenario.relaying(args.model_list)[0]) + 1)
                       * len(chat_scenario.cases()) * args.repeat)
                 if first.name == "chat"
                 else len(args.model_list) * len(args.scenarios))
        repeats = f" x {args.repeat} repeats" if args.repeat > 1 else ""
        print(f"bench: {total} cases{repeats}, {args.duration_s:g} s each, results in "
              f"{bench.out}", flush=True)
    bench.floor = machine.measure_floor()
    servers.probe_cgroups()
    machine.write_machine(bench)


def run_matrix(bench: Bench) -> list[str]:
    """Every model in every scenario, then the targets; returns the summary lines."""
    args = bench.args
    models, scenarios = args.model_list, args.scenarios
    total = len(models) * len(scenarios) * args.repeat
    # Repeats interleave the models (A B C A B C, never A A A B B B), so that drift on a
    # shared machine spreads over all of them.
    index = 0
    for bench.repeat in range(1, args.repeat + 1):
        for scenario in scenarios:
            for model in models:
                index += 1
                bench.run_case(index, total, model, scenario, args.duration_s)
    bench.repeat = 1
    target_lines = targets.run(bench, args.duration_s) if args.targets else []
    lines = matrix_table(bench.results, models, scenarios, args.repeat)
    lines += scale_out_lines(bench.results, models, scenarios)
    lines += idle_cpu_lines(bench.results, models, scenarios)
    lines += udp_lines(bench.results) + unpinned_lines(bench.results, models, scenarios)
    lines += accept_modes.summary_lines(bench.results.rows)
    if target_lines:
        lines += ["", "performance targets (ratios measured in this run):"]
        lines += ["  " + t for t in target_lines]
    return lines


def matrix_cell(results: Results, model: str, scenario: str, repeats: int) -> str:
    """'45,210 (812)': the median req/s and p99 of one case, marked as the legend says."""
    rows = results.case_rows(model, scenario)
    if not rows:
        return "failed"
    rps = results.case_median(model, scenario, "throughput_rps")
    p99 = results.case_median(model, scenario, "latency_p99_us")
    starved = any(r.get("starved_connections") not in ("", "0", None) for r in rows)
    # loadgen's own verdict: a number it says it limited itself is marked.
    bound = any(r.get("verdict") == "generator-bound" for r in rows)
    cell = f"{rps:,.0f} " + (f"({p99:,.0f})" if p99 is not None else "(-)")
    if repeats > 1:
        values = [float(r["throughput_rps"]) for r in rows]
        spread = (max(values) - min(values)) / rps if rps else 0
        cell += f" ±{spread / 2:.0%}"
    return cell + ("*" if starved else "") + ("!" if bound else "")


def matrix_table(results: Results, models: list[str], scenarios: list[Scenario],
                 repeats: int) -> list[str]:
    lines = ["req/s (p99 us) by scenario and model" +
             (f", medians of {repeats} repeats with the throughput's spread "
              "(max - min over the median):" if repeats > 1 else ":")]
    width = max(len(s.name) for s in scenarios) + 2
    column = 28 if repeats > 1 else 22
    lines.append(" " * width + "".join(f"{m:>{column}}" for m in models))
    for s in scenarios:
        cells = [f"{matrix_cell(results, m, s.name, repeats):>{column}}" for m in models]
        lines.append(f"{s.name:<{width}}" + "".join(cells))
    lines.append("(* = some fast connections starved: completed no request; "
                 "(-) = no request completed, so no latency; ! = loadgen judged itself the "
                 "bottleneck (its verdict column): the figure is partly loadgen's limit)")
    return lines


def idle_cpu_lines(results: Results, models: list[str], scenarios: list[Scenario]) -> list[str]:
    """Each model's CPU seconds holding a scenario's slow clients with no load (median and
    range over the repeats), for the scenarios with a quiet run."""
    lines = []
    for s in scenarios:
        if not s.idle_cpu_window_s:
            continue
        lines += ["", f"{s.name}: server CPU seconds (process tree) over {s.idle_cpu_window_s:g} s "
                      f"with {s.slow_clients:,} idle clients and no load (idle_cpu_s):"]
        for m in models:
            values = [float(r["idle_cpu_s"]) for r in results.rows
                      if r["model"] == m and r["scenario"] == s.name and r.get("idle_cpu_s")]
            if not values:
                lines.append(f"  {m:<12} not measured")
                continue
            spread = f" (runs {min(values):.3f}-{max(values):.3f})" if len(values) > 1 else ""
            lines.append(f"  {m:<12} {median(values):7.3f} s{spread}")
    return lines


def udp_lines(results: Results) -> list[str]:
    udp_rows = [r for r in results.rows if r.get("protocol") == "udp"]
    if not udp_rows:
        return []
    lines = ["", "udp datagrams lost (no echo within --timeout), late and reordered; "
                 "drops by the server (its summary) and by the kernel (full receive "
                 "buffers, any socket, during the case):"]
    for r in udp_rows:
        share = f" ({float(r['lost_pct']):.2f}% of {int(r['datagrams_sent']):,} sent)" \
            if r.get("lost_pct") and r.get("datagrams_sent") else ""
        lines.append(f"  {r['model']:<10} {r['scenario']:<14} lost {r.get('lost') or '-'}"
                     f"{share}, late {r.get('late') or '-'}, "
                     f"reordered {r.get('reordered') or '-'}; dropped by server "
                     f"{r.get('server_dropped') or '-'}, by kernel "
                     f"{r.get('kernel_udp_rcvbuf_errors') or '-'}")
    return lines


def unpinned_lines(results: Results, models: list[str], scenarios: list[Scenario]) -> list[str]:
    """Where nothing is pinned, each model's throughput over libuv's in the same run."""
    lines = []
    for s in scenarios:
        if s.pinned or "libuv" not in models:
            continue
        base = results.case_median("libuv", s.name, "throughput_rps")
        if not base:
            continue
        lines += ["", f"{s.name}: throughput over libuv's ({base:,.0f} req/s), same run:"]
        for m in models:
            rps = results.case_median(m, s.name, "throughput_rps")
            if rps is not None and m != "libuv":
                lines.append(f"  {m:<10} {rps:>10,.0f} req/s  {rps / base:.2f}x")
    return lines


def scale_out_lines(results: Results, models: list[str], scenarios: list[Scenario]) -> list[str]:
    """The scale-out scenario: each model's closed-loop capacity by the number of load
    ranks, against one rank's, with loadgen's verdict on itself."""
    ranked = [s for s in scenarios if s.ranks]
    if not ranked:
        return []
    lines = ["", "capacity by load ranks (closed loop, the same connections split over the "
                 "ranks; medians):"]
    for m in models:
        base = results.case_median(m, ranked[0].name, "throughput_rps")
        for s in ranked:
            rps = results.case_median(m, s.name, "throughput_rps")
            if rps is None:
                lines.append(f"  {m:<10} {s.ranks} rank(s): failed")
                continue
            verdicts = sorted({r.get("verdict") or "?" for r in results.case_rows(m, s.name)})
            skew = results.case_median(m, s.name, "start_skew_us")
            ratio = f"  {rps / base:.2f}x of 1 rank" if base else ""
            lines.append(f"  {m:<10} {s.ranks} rank(s): {rps:>10,.0f} req/s{ratio}, "
                         f"verdict {'/'.join(verdicts)}"
                         + (f", windows {skew:,.0f} us apart" if skew is not None else ""))
    return lines
