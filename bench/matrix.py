#!/usr/bin/env python3
"""The bench driver behind bench/run: runs every server model under the same loads,
one case at a time (server pinned to one CPU, loadgen to another), and writes
results.csv, machine.txt, targets.txt and plots into one run folder. The http
scenario instead puts our HTTP server and loadgen beside nginx and wrk (bench/peers.py).

Standard library only; every number in its output comes from loadgen, bench/floor
or /proc in this run."""

from __future__ import annotations

import argparse
import datetime as dt
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import cgroups
import generator as generator_scenario
import http_scenario
import latency
import machine
import report
import servers
import targets
from results import Results, describe_result
from scenarios import (HTTP_ROUNDS, TARGET_ROUNDS, Scenario, UsageError,
                       list_lines, matrix, parse_duration_s)
from servers import (ECHO_SERVER, FLOOR, LOADGEN, PLOT, ROOT, SERVER_ARGS, Server,
                     cpu_count, max_connections_guard, pinned, registered_models,
                     udp_rcvbuf_errors)


def on_terminate(signum: int, _frame) -> None:
    raise SystemExit(128 + signum)


class Bench:
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

    def floor_rtt_us(self) -> str:
        key = "floor_rtt_2cpu_mean_us" if self.cpus >= 2 else "floor_rtt_1cpu_mean_us"
        return f"{self.floor[key]:.2f}" if key in self.floor else ""

    # --- one case ----------------------------------------------------------------
    def run_case(self, index: int, total: int, model: str, scenario: Scenario,
                 duration_s: float, label: str | None = None) -> dict[str, str] | None:
        tag = f"[{index}/{total}] {model} {scenario.name}" if total else f"[target] {model} {scenario.name}"
        cap = 0 if scenario.protocol == "udp" else \
            max_connections_guard(model, scenario.slow_clients + scenario.connections + 64)
        server_cpu = self.server_cpu if scenario.pinned else None
        loadgen_cpu = self.loadgen_cpu if scenario.pinned else None
        server = Server(model, server_cpu, cap, scenario.protocol)
        error = server.wait_ready()
        row: dict[str, str] | None = None
        outcome = "ok"
        if error is None:
            warmup = scenario.warmup or self.args.warmup
            # Repeats after the first get a suffix; the first keeps the plain name the
            # plots read its histogram by.
            suffix = f"-r{self.repeat}" if self.repeat > 1 else ""
            csv_path = self.out / "cases" / f"{model}-{scenario.name}{suffix}.csv"
            hist_path = self.out / "histograms" / f"{model}-{scenario.name}{suffix}.hgrm"
            cmd = self.loadgen_cmd(server.port, scenario.protocol, scenario.connections,
                                   duration_s, warmup, label or scenario.name, csv_path,
                                   hist_path, server.sampling_args())
            if scenario.protocol != "http":  # http: a GET, as wrk sends
                cmd += ["--payload", str(scenario.payload_bytes)]
            if scenario.slow_clients:
                cmd += ["--slow-clients", str(scenario.slow_clients),
                        "--slow-mode", scenario.slow_mode]
            if scenario.requests_per_connection:
                cmd += ["--requests-per-connection", str(scenario.requests_per_connection)]
            cmd += scenario.extra
            budget_s = duration_s + parse_duration_s(warmup) + 300
            drops_before = udp_rcvbuf_errors()
            outcome, row = self.run_loadgen(pinned(cmd, loadgen_cpu), csv_path, budget_s)
            drops_after = udp_rcvbuf_errors()
            server.note_children()
            stop_error, summary = server.stop()
            if scenario.protocol == "udp" and row is not None:
                # Who lost the datagrams loadgen counts as lost: the server's own count
                # of echoes it dropped, and the kernel's full-buffer drops (any socket).
                dropped = re.search(r"\bdropped=(\d+)", summary)
                row["server_dropped"] = dropped.group(1) if dropped else ""
                if drops_before is not None and drops_after is not None:
                    row["kernel_udp_rcvbuf_errors"] = str(drops_after - drops_before)
            if stop_error:
                outcome = stop_error if outcome == "ok" else f"{outcome}; {stop_error}"
            if cap and cap < scenario.slow_clients + scenario.connections and outcome == "ok":
                outcome = f"ok (server capped at --max-connections {cap})"
        else:
            server.stop()
            outcome = error
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

    def run_loadgen(self, cmd: list[str], csv_path: Path,
                    budget_s: float) -> tuple[str, dict[str, str] | None]:
        """Runs one loadgen command; returns (outcome, its CSV row or None)."""
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=budget_s)
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
        cmd = [str(LOADGEN), "--host", "127.0.0.1", "--port", str(port), "--protocol", protocol,
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
            outcome, row = self.run_loadgen(pinned(cmd + extra, self.loadgen_cpu), csv_path,
                                            budget_s)
            stop_error, _ = server.stop()
            if stop_error:
                outcome = stop_error if outcome == "ok" else f"{outcome}; {stop_error}"
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
        self.step_index = getattr(self, "step_index", 0) + 1
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
        outcome, row = self.run_loadgen(pinned(cmd, self.loadgen_cpu), csv_path, budget_s)
        shown = row
        row = self.record_row(row, {"label": label, "connections": str(latency.CONNECTIONS),
                                    "slow_clients": str(slow)}, model, scenario, outcome)
        verdict = row.get("verdict") or ""
        mark = "" if verdict in ("", "ok") else f"  {verdict}"
        offered = f"{rate_rps:,.0f} offered" if rate_rps > 0 else "closed loop"
        print(f"[{tag}] {label:>8} {offered:>16}: {describe_result(row)}{mark}"
              + ("" if outcome == "ok" else f"  [{outcome}]"), flush=True)
        return latency.Step(label, rate_rps, shown if outcome == "ok" else None)

    # --- the whole run -----------------------------------------------------------
    def run(self) -> int:
        code = self.run_scenarios()
        index = report.write_index(self.out, f"bench run {self.run_id}", self.args.command)
        print(f"report: {index}", flush=True)
        return code

    def run_scenarios(self) -> int:
        scenarios = self.args.scenarios
        models = self.args.model_list
        duration_s = self.args.duration_s
        http = scenarios[0].protocol == "http"
        total = (HTTP_ROUNDS * (len(models) + 1) * 2) if http else len(models) * len(scenarios)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "cases").mkdir(exist_ok=True)
        (self.out / "histograms").mkdir(exist_ok=True)
        if scenarios[0].name in ("generator", "latency"):
            print(f"bench: the {scenarios[0].name} scenario, {duration_s:g} s runs, results in "
                  f"{self.out}", flush=True)
        else:
            repeats = f" x {self.args.repeat} repeats" if self.args.repeat > 1 else ""
            print(f"bench: {total} cases{repeats}, {duration_s:g} s each, results in {self.out}",
                  flush=True)
        self.floor = machine.measure_floor()
        servers.probe_cgroups()
        machine.write_machine(self)
        if scenarios[0].name == "latency":
            lines = latency.run(self, "trickle" if self.args.latency_trickle else "idle",
                                self.args.slo_p99_us, models, self.args.repeat)
            text = "\n".join([""] + lines) + "\n"
            print(text, flush=True)
            (self.out / "summary.txt").write_text(text)
            if not self.args.no_plots:
                subprocess.run([str(PLOT), str(self.out / "results.csv"), str(self.out / "plots")])
            return 0
        if scenarios[0].name == "generator":
            lines = generator_scenario.run(self, Server, TARGET_ROUNDS, duration_s)
            text = "\n".join([""] + lines) + "\n"
            print(text, flush=True)
            (self.out / "summary.txt").write_text(text)
            return 0
        if http:
            lines = http_scenario.run(self, duration_s)
            text = "\n".join([""] + lines) + "\n"
            print(text, flush=True)
            (self.out / "summary.txt").write_text(text)
            print("plots: none for the http scenario (summary.txt has its table)", flush=True)
            return 0
        # Repeats interleave the models (A B C A B C, never A A A B B B), so that drift on a
        # shared machine spreads over all of them.
        index = 0
        for self.repeat in range(1, self.args.repeat + 1):
            for scenario in scenarios:
                for model in models:
                    index += 1
                    self.run_case(index, total * self.args.repeat, model, scenario, duration_s)
        self.repeat = 1
        target_lines = targets.run(self, duration_s) if self.args.targets else []
        self.print_summary(models, scenarios, target_lines)
        if scenarios[0].protocol == "udp":
            print("plots: none for the udp scenario (summary.txt has its table)", flush=True)
        elif not self.args.no_plots:
            subprocess.run([str(PLOT), str(self.out / "results.csv"), str(self.out / "plots")])
        return 0

    def print_summary(self, models: list[str], scenarios: list[Scenario],
                      target_lines: list[str]) -> None:
        repeats = self.args.repeat
        lines = ["", "req/s (p99 us) by scenario and model" +
                 (f", medians of {repeats} repeats with the throughput's spread "
                  "(max - min over the median):" if repeats > 1 else ":")]
        width = max(len(s.name) for s in scenarios) + 2
        column = 28 if repeats > 1 else 22
        lines.append(" " * width + "".join(f"{m:>{column}}" for m in models))
        for s in scenarios:
            cells = []
            for m in models:
                rows = self.results.case_rows(m, s.name)
                if rows:
                    rps = self.results.case_median(m, s.name, "throughput_rps")
                    p99 = self.results.case_median(m, s.name, "latency_p99_us")
                    starved = any(r.get("starved_connections") not in ("", "0", None) for r in rows)
                    # loadgen's own verdict: a number it says it limited itself is marked.
                    bound = any(r.get("verdict") == "generator-bound" for r in rows)
                    cell = f"{rps:,.0f} " + (f"({p99:,.0f})" if p99 is not None else "(-)")
                    if repeats > 1:
                        values = [float(r["throughput_rps"]) for r in rows]
                        spread = (max(values) - min(values)) / rps if rps else 0
                        cell += f" ±{spread / 2:.0%}"
                    cell += ("*" if starved else "") + ("!" if bound else "")
                else:
                    cell = "failed"
                cells.append(f"{cell:>{column}}")
            lines.append(f"{s.name:<{width}}" + "".join(cells))
        lines.append("(* = some fast connections starved: completed no request; "
                     "(-) = no request completed, so no latency; ! = loadgen judged itself the "
                     "bottleneck (its verdict column): the figure is partly loadgen's limit)")
        udp_rows = [r for r in self.results.rows if r.get("protocol") == "udp"]
        if udp_rows:
            lines += ["", "udp datagrams lost (no echo within --timeout), late and reordered; "
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
        for s in scenarios:
            if s.pinned or "libuv" not in models:
                continue
            base = self.results.case_median("libuv", s.name, "throughput_rps")
            if not base:
                continue
            lines += ["", f"{s.name}: throughput over libuv's ({base:,.0f} req/s), same run:"]
            for m in models:
                rps = self.results.case_median(m, s.name, "throughput_rps")
                if rps is not None and m != "libuv":
                    lines.append(f"  {m:<10} {rps:>10,.0f} req/s  {rps / base:.2f}x")
        if target_lines:
            lines += ["", "performance targets (ratios measured in this run):"]
            lines += ["  " + t for t in target_lines]
        text = "\n".join(lines) + "\n"
        print(text, flush=True)
        (self.out / "summary.txt").write_text(text)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run",
        description="Runs every echo-server model under the same loads and writes "
                    "results.csv, machine.txt, summary.txt and plots into one folder.")
    parser.add_argument("--quick", action="store_true",
                        help="3 scenarios (0, 10, 1000 idle slow clients), 3 s each")
    parser.add_argument("--scenario", default=None,
                        help="matrix to run: default, quick, c10k (10,000 idle slow clients), "
                             "cores (64 connections, unpinned: epoll, libuv, reactors, prefork), "
                             "udp (every model serving udp, closed and open loop, with loss) or "
                             "http (loadgen and wrk against nginx and our libuv HTTP server; "
                             "--models picks other of our servers) or generator (loadgen's own "
                             "CPU per request and schedule in open loop, and what sampling the "
                             "server costs its tail, as ratios) or latency (p99 across load and "
                             "each model's capacity at --slo-p99; --quick: iterative, fork, "
                             "thread, libuv)")
    parser.add_argument("--models", default="",
                        help="comma-separated models to run (default: every registered model)")
    parser.add_argument("--duration", default=None,
                        help="measured seconds per case, e.g. 5s (default 5s; 3s with --quick)")
    parser.add_argument("--warmup", default=None, help="warm-up per case, excluded (default 1s; latency: 500ms; the http scenario has "
                             "none, as wrk has none)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default results/<UTC date-time>/)")
    parser.add_argument("--list", action="store_true", help="print the matrix and exit")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run the whole matrix N times, the models interleaved (A B C A B C), "
                             "one results.csv row per run (its repeat column); the summary and "
                             "plots show medians (default 1)")
    parser.add_argument("--slo-p99", default="1ms",
                        help="latency scenario: the target whose capacity it finds (default 1ms)")
    parser.add_argument("--latency-trickle", action="store_true",
                        help="latency scenario: the 1,000 slow clients trickle instead of idling")
    parser.add_argument("--server-args", action="append", default=[], metavar="MODEL=FLAGS",
                        help="extra echo-server flags for one model, e.g. "
                             "thread='--buffer-size 4'; repeatable; recorded in results.csv's "
                             "server_args column")
    parser.add_argument("--no-plots", action="store_true", help="skip plots/plot")
    parser.add_argument("--no-targets", dest="targets", action="store_false",
                        help="skip the performance-target runs and ratios (they run with the "
                             "default matrix only)")
    args = parser.parse_args(argv)
    args.command = " ".join(["bench/run", *argv])

    if not 1 <= args.repeat <= 100:
        raise UsageError(f"--repeat: {args.repeat} is not from 1 to 100")
    kind = args.scenario or ("quick" if args.quick else "default")
    if args.quick and args.scenario and args.scenario not in ("quick", "latency"):
        raise UsageError("--quick and --scenario name different matrices")
    args.slo_p99_us = parse_duration_s(args.slo_p99, "--slo-p99") * 1e6
    args.scenarios = matrix(kind)
    if args.repeat > 1 and kind in ("http", "generator"):
        raise UsageError(f"--repeat: the {kind} scenario runs its own alternating rounds")
    args.duration_s = parse_duration_s(args.duration or ("3s" if kind == "quick" else
                                                         "2s" if kind == "latency" else "5s"))
    args.warmup = args.warmup or ("500ms" if kind == "latency" else "1s")
    parse_duration_s(args.warmup, "--warmup")
    known = registered_models()
    if not known:
        raise UsageError(f"cannot list models from {ECHO_SERVER}; was the build successful?")
    if args.models:
        args.model_list = [m.strip() for m in args.models.split(",") if m.strip()]
        unknown = [m for m in args.model_list if m not in known]
        if unknown:
            raise UsageError(f"--models: unknown model {', '.join(unknown)} "
                             f"(known: {', '.join(known)})")
    elif kind == "cores":
        args.model_list = [m for m in ("epoll", "libuv", "reactors", "prefork") if m in known]
    elif kind == "http":
        args.model_list = ["libuv"]
    elif kind == "latency" and args.quick:
        args.model_list = [m for m in latency.QUICK_MODELS if m in known]
    else:
        args.model_list = list(known)
    protocol = args.scenarios[0].protocol
    refused = [m for m in args.model_list if protocol not in known[m]]
    if refused and args.models:
        raise UsageError(f"--models: {', '.join(refused)} do not serve {protocol} "
                         "(see echo-server --list-models)")
    args.model_list = [m for m in args.model_list if m not in refused]
    args.server_args = parse_server_args(args.server_args, known)
    if not args.model_list:
        raise UsageError(f"no model of {ECHO_SERVER.name} serves {protocol}")
    # The targets take three alternating rounds of four runs (about a minute and a
    # half): part of the default matrix, left out of --quick to keep it within 3 minutes.
    if kind != "default":
        args.targets = False
    if args.out is None:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H-%M-%SZ")
        args.out = ROOT / "results" / stamp
    return args


def parse_server_args(specs: list[str], known) -> dict[str, list[str]]:
    """--server-args MODEL=FLAGS, each given once per model."""
    extra: dict[str, list[str]] = {}
    for spec in specs:
        model, sep, flags = spec.partition("=")
        if not sep or not model:
            raise UsageError(f"--server-args: '{spec}' is not MODEL=FLAGS")
        if model not in known:
            raise UsageError(f"--server-args: unknown model {model} (known: {', '.join(known)})")
        if model in extra:
            raise UsageError(f"--server-args: {model} given twice")
        try:
            extra[model] = shlex.split(flags)
        except ValueError as e:
            raise UsageError(f"--server-args: {model}: {e}") from None
        # echo-server parses every flag before it lists the models: a bad one fails here,
        # not in every case of the run.
        check = subprocess.run([str(ECHO_SERVER), "--model", model, *extra[model],
                                "--list-models"], capture_output=True, text=True)
        if check.returncode != 0:
            raise UsageError(f"--server-args: {model}: {check.stderr.strip()}")
    return extra


def main(argv: list[str]) -> int:
    try:
        args = parse_args(argv)
    except UsageError as e:
        print(f"bench/run: {e}", file=sys.stderr)
        return 2
    SERVER_ARGS.update(args.server_args)
    if args.list:
        print("\n".join(list_lines(args)))
        return 0
    for binary in (ECHO_SERVER, LOADGEN, FLOOR):
        if not binary.exists():
            print(f"bench/run: {binary} is missing; the build did not produce it", file=sys.stderr)
            return 1
    signal.signal(signal.SIGTERM, on_terminate)
    try:
        return Bench(args).run()
    except KeyboardInterrupt:
        print("bench/run: interrupted; stopping the servers it started", file=sys.stderr)
        return 130
    finally:
        servers.stop_all()
        cgroups.remove_parents()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
