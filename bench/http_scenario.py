"""The http scenario: our HTTP servers and loadgen beside tools users already trust,
nginx and wrk (bench/peers.py). In each of HTTP_ROUNDS rounds every server is started
once and both generators take a turn against it; the summary sets the two generators
side by side per server, checks each one's figures by Little's law and by its own
CPU, and states the ratios as targets.

Run by cases.run through the bench's loadgen command and row recording;
standard library only."""

from __future__ import annotations

import resource
import sys
from statistics import median

import peers
from results import describe_result
from scenarios import HTTP_CONNECTIONS, HTTP_ROUNDS
from servers import LIVE_SERVERS, Server, pinned, tree_cpu_s


def run(bench, duration_s: float) -> list[str]:
    """HTTP_ROUNDS rounds; in each, every server is started once and both generators
    take a turn against it, the order of servers and of generators flipping every
    round so that neither side always runs first (or on a warmer machine). Returns
    the summary lines."""
    servers = ["nginx"] + bench.args.model_list
    generators = ["loadgen", "wrk"]
    total = HTTP_ROUNDS * len(servers) * len(generators)
    rows: dict[tuple[str, str], list[dict[str, str]]] = {}
    index = 0
    for round_index in range(HTTP_ROUNDS):
        flip = round_index % 2 == 1
        for name in servers[::-1] if flip else servers:
            handle, port, pid, error = start_server(bench, name)
            for generator in generators[::-1] if flip else generators:
                index += 1
                row = run_case(bench, f"{index}/{total}", generator, name, handle, port, pid,
                               duration_s, error)
                rows.setdefault((name, generator), []).append(row)
            if handle in LIVE_SERVERS:
                LIVE_SERVERS.remove(handle)
            stop_error, _ = handle.stop()
            if stop_error:
                print(f"  {name}: {stop_error}", file=sys.stderr, flush=True)
    return summary(servers, rows)


def start_server(bench, name: str) -> tuple[object, int, int, str | None]:
    """Starts nginx or one of our models in http mode; (handle, port, pid, error)."""
    cpu = pinned([], bench.server_cpu)
    if name == "nginx":
        # nginx resolves relative paths against its prefix: hand it absolute ones.
        nginx = peers.Nginx(bench.out.resolve() / "nginx", cpu)
        LIVE_SERVERS.append(nginx)
        error = nginx.wait_ready()
        return nginx, nginx.port, nginx.proc.pid, error
    server = Server(name, bench.server_cpu, 0, "http")
    error = server.wait_ready()  # learns the port
    return server, server.port, server.proc.pid, error


def run_case(bench, tag: str, generator: str, server: str, handle, port: int, pid: int,
             duration_s: float, start_error: str | None) -> dict[str, str]:
    """One generator's run against one server (`handle`, a Server or peers.Nginx; none
    when it did not start: then the row carries start_error); appends and returns its
    row."""
    outcome, row = "ok", None
    budget_s = duration_s + 120
    if start_error:
        outcome = start_error
    elif generator == "wrk":
        outcome, row = run_wrk(bench, port, pid, duration_s, budget_s)
    else:
        case = f"{server}-http-{tag.split('/')[0]}"
        csv_path = bench.out / "cases" / f"{case}.csv"
        # No warm-up: wrk has none, and both sides must measure the same thing.
        cmd = bench.loadgen_cmd(port, "http", HTTP_CONNECTIONS, duration_s, "0s", "loadgen",
                                csv_path, bench.out / "histograms" / f"{case}.hgrm",
                                handle.sampling_args()) + ["--threads", "1"]
        outcome, row = bench.run_loadgen(pinned(cmd, bench.loadgen_cpu), csv_path, budget_s)
    row = bench.record_row(row, {"label": generator, "protocol": "http",
                                 "connections": str(HTTP_CONNECTIONS)},
                           server, "http", outcome)
    extra = "" if outcome == "ok" else f"  [{outcome}]"
    errors = row.get("errors") or "0"
    if errors != "0":
        extra += f"  errors {errors}"
    print(f"[{tag}] {generator:>7} -> {server:<8} {describe_result(row)}{extra}", flush=True)
    return row


def run_wrk(bench, port: int, pid: int, duration_s: float,
            budget_s: float) -> tuple[str, dict[str, str] | None]:
    """One wrk run; returns (outcome, its row in the results' columns or None)."""
    # wrk reports neither its own CPU nor the server's: read both around its run
    # (the children's rusage, the server's /proc), into the columns loadgen fills.
    server_before = tree_cpu_s(pid)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    values, error = peers.run_wrk(pinned([], bench.loadgen_cpu), port, HTTP_CONNECTIONS,
                                  duration_s, budget_s)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if not values:
        return error, None
    row = bench.results.blank_row(peers.wrk_row(values, port, HTTP_CONNECTIONS))
    wrk_cpu_s = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    row["loadgen_cpu_s"] = f"{wrk_cpu_s:.3f}"
    row["server_cpu_s"] = f"{tree_cpu_s(pid) - server_before:.3f}"
    return "ok", row


class Medians:
    """The medians of the runs that succeeded, per server and generator."""

    def __init__(self, rows: dict[tuple[str, str], list[dict[str, str]]]):
        self.rows = rows

    def of(self, server: str, generator: str, key: str) -> float | None:
        values = []
        for row in self.rows.get((server, generator), []):
            if row.get("outcome") == "ok" and row.get(key):
                values.append(float(row[key]))
        return median(values) if values else None

    def busy(self, server: str, generator: str) -> float | None:
        """The generator's CPU seconds over the window's: 1.0 is a saturated core."""
        cpu = self.of(server, generator, "loadgen_cpu_s")
        seconds = self.of(server, generator, "duration_s")
        return cpu / seconds if cpu is not None and seconds else None

    def cpu_per_request_us(self, server: str, generator: str) -> float | None:
        cpu = self.of(server, generator, "server_cpu_s")
        requests = self.of(server, generator, "requests")
        return cpu / requests * 1e6 if cpu is not None and requests else None

    def latency_cell(self, server: str, generator: str) -> str:
        p50 = self.of(server, generator, "latency_p50_us")
        p99 = self.of(server, generator, "latency_p99_us")
        return f"{p50:,.0f} / {p99:,.0f}" if p50 is not None and p99 is not None else "-"


def summary(servers: list[str], rows: dict[tuple[str, str], list[dict[str, str]]]) -> list[str]:
    medians = Medians(rows)
    return (table_lines(servers, medians) + check_lines(servers, medians) + [""]
            + target_lines(servers, medians))


def table_lines(servers: list[str], m: Medians) -> list[str]:
    lines = [f"http: loadgen and wrk, 1 thread and {HTTP_CONNECTIONS} keep-alive connections "
             f"each, GET /; medians of {HTTP_ROUNDS} alternating runs",
             f"  {'server':<10}{'loadgen req/s':>15}{'wrk req/s':>12}{'loadgen/wrk':>13}"
             f"{'loadgen p50/p99 us':>21}{'wrk p50/p99 us':>17}"]
    for server in servers:
        lg, wrk = m.of(server, "loadgen", "throughput_rps"), m.of(server, "wrk", "throughput_rps")
        ratio = f"{lg / wrk:.2f}x" if lg and wrk else "-"
        lines.append(f"  {server:<10}{(f'{lg:,.0f}' if lg else 'failed'):>15}"
                     f"{(f'{wrk:,.0f}' if wrk else 'failed'):>12}{ratio:>13}"
                     f"{m.latency_cell(server, 'loadgen'):>21}{m.latency_cell(server, 'wrk'):>17}")
    return lines


def check_lines(servers: list[str], m: Medians) -> list[str]:
    # A closed loop keeps every connection busy: by Little's law, req/s times the
    # mean latency must come to the number of connections. A generator whose
    # product falls short is leaving part of each request's time off its clock.
    checks = ["", f"  {'server':<10}{'generator':<10}{'req/s x mean latency':>22}"
                  f"{'generator CPU':>15}{'server CPU/request':>20}"]
    for server in servers:
        for generator in ("loadgen", "wrk"):
            rps = m.of(server, generator, "throughput_rps")
            mean_us = m.of(server, generator, "latency_mean_us")
            if not (rps and mean_us):
                continue
            fraction = m.busy(server, generator)
            per_request = m.cpu_per_request_us(server, generator)
            checks.append(f"  {server:<10}{generator:<10}"
                          f"{f'{rps * mean_us / 1e6:.1f} of {HTTP_CONNECTIONS}':>22}"
                          f"{(f'{fraction:.0%}' if fraction is not None else '-'):>15}"
                          f"{(f'{per_request:.2f} us' if per_request else '-'):>20}")
    return checks


def target(what: str, top: float | None, bottom: float | None) -> str:
    if not top or not bottom:
        return f"{what}: not measured (a run failed)"
    verdict = "met" if top / bottom >= 1.0 else "MISSED"
    return (f"{what}: {top:,.0f} / {bottom:,.0f} = {top / bottom:.2f}x "
            f"(target >= 1.00x): {verdict}")


def target_lines(servers: list[str], m: Medians) -> list[str]:
    lines = []
    for server in servers:
        lines.append(target(f"loadgen req/s over wrk req/s against {server}",
                            m.of(server, "loadgen", "throughput_rps"),
                            m.of(server, "wrk", "throughput_rps")))
    for server in servers[1:]:
        lines.append(target(f"{server} HTTP server req/s over nginx's, as wrk measures",
                            m.of(server, "wrk", "throughput_rps"),
                            m.of("nginx", "wrk", "throughput_rps")))
        lines += wrk_bound_note(server, m)
    return lines


def wrk_bound_note(server: str, m: Medians) -> list[str]:
    """When wrk is the bottleneck, the server-over-nginx ratio measures wrk twice: how
    busy it was, and the two figures that tell the servers apart regardless."""
    wrk_nginx, wrk_ours = m.busy("nginx", "wrk"), m.busy(server, "wrk")
    ours = m.of(server, "loadgen", "throughput_rps")
    theirs = m.of("nginx", "loadgen", "throughput_rps")
    if wrk_nginx is None or wrk_ours is None or not ours or not theirs:
        return []
    note = (f"  (wrk's CPU was {wrk_nginx:.0%} busy against nginx and {wrk_ours:.0%} "
            f"against {server}: where it is saturated it, not the server, bounds "
            f"that ratio; loadgen measures {server} over nginx at {ours / theirs:.2f}x")
    mine, nginx = m.cpu_per_request_us(server, "loadgen"), m.cpu_per_request_us("nginx", "loadgen")
    if mine and nginx:
        note += (f", and {server} spends {mine:.2f} us of CPU per request to "
                 f"nginx's {nginx:.2f} us")
    return [note + ")"]
