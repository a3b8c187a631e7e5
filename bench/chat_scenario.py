"""The chat scenario: loadgen's fan-out workload (--protocol ws --path /chat) against the
bench's Node.js peer (bench/ws-peer, npm's ws) and every echo-server model that lists
ws among its protocols (echo-server --list-models). One room, closed loop, of each of
ROOM_SIZES members, and the middle size again with IDLE_MEMBERS idle slow members who
join and never read; each case a fresh server pinned apart from loadgen. Every message
goes to every member, so a room of N members owes N deliveries per message: the
summary sets deliveries/s and the p99 fan-out latency side by side, states our ratios
to the Node peer, what the idle members did to the others' p99, how many of them each
server evicted (server_evicted, from its last line) and what they cost it in memory.

Bounded: each case is --duration (+ --warmup) plus the drain of DRAIN (the time a
message has to reach every member before it counts as lost). Run by cases.run through
the bench's loadgen command and row recording; standard library only."""

from __future__ import annotations

import re
from statistics import median

import peers
from results import column_values, describe_result
from servers import LIVE_SERVERS, Server, model_traits, pinned

PEER = "node-ws"
ROOM_SIZES = (10, 100, 1000)
IDLE_MEMBERS = 100
IDLE_ROOM = 100
PAYLOAD_BYTES = 64
DRAIN = "2s"
MAX_BACKLOG_KB = 1024  # the peer's, the same as echo-server's default --max-backlog
MAX_BACKLOG = f"{MAX_BACKLOG_KB // 1024}MiB"


# The --list-models traits of a model whose rooms hold more than one member: one loop
# walks them, threads share them, or loops hand messages to each other. A model with
# ws but none of these relays nothing (fork and prefork answer /chat with 501) or is a
# room of one (iterative serves one member at a time): it cannot hold these rooms.
RELAYING_TRAITS = ("loop-rooms", "shared-rooms", "hub-rooms")


def relaying(models: list[str]) -> tuple[list[str], list[str]]:
    """The models (all serving ws) whose rooms relay between members, and the others."""
    traits = model_traits()
    good = [m for m in models if set(RELAYING_TRAITS) & traits.get(m, set())]
    return good, [m for m in models if m not in good]


def cases() -> list[tuple[str, int, int]]:
    """(scenario name, members, idle slow members) in the order they run."""
    out = [(f"chat-{n}", n, 0) for n in ROOM_SIZES]
    out.append((f"chat-{IDLE_ROOM}-idle-{IDLE_MEMBERS}", IDLE_ROOM, IDLE_MEMBERS))
    return out


def describe() -> str:
    sizes = ", ".join(str(n) for n in ROOM_SIZES)
    return (f"the chat scenario: one room of {sizes} members (closed loop, {PAYLOAD_BYTES} B "
            f"messages) and {IDLE_ROOM} members with {IDLE_MEMBERS} idle ones")


def start(bench, name: str):
    """Starts the Node peer or one of our models in ws mode; (handle, error)."""
    if name == PEER:
        handle = peers.WsPeer(pinned([], bench.server_cpu), MAX_BACKLOG)
        LIVE_SERVERS.append(handle)
    else:
        handle = Server(name, bench.server_cpu, 0, "ws")
    return handle, handle.wait_ready()


def run(bench, duration_s: float) -> list[str]:
    """Every case against every server (the peer first), each on a fresh server; returns
    the summary lines."""
    models, left_out = relaying(bench.args.model_list)
    servers = [PEER] + models
    plan = cases()
    rows: dict[tuple[str, str], list[dict[str, str]]] = {}
    total = len(servers) * len(plan) * bench.args.repeat
    index = 0
    for bench.repeat in range(1, bench.args.repeat + 1):
        for scenario, members, idle in plan:
            for server in servers:
                index += 1
                row = run_case(bench, f"{index}/{total}", server, scenario, members, idle,
                               duration_s)
                rows.setdefault((server, scenario), []).append(row)
    bench.repeat = 1
    lines = summary(servers, plan, rows)
    if left_out:
        lines.append(f"left out, serving ws without rooms of more than one member "
                     f"(--list-models): {', '.join(left_out)}")
    return lines


def run_case(bench, tag: str, server: str, scenario: str, members: int, idle: int,
             duration_s: float) -> dict[str, str]:
    handle, error = start(bench, server)
    outcome, row = error or "ok", None
    if not error:
        suffix = f"-r{bench.repeat}" if bench.repeat > 1 else ""
        case = f"{server}-{scenario}{suffix}"
        csv_path = bench.out / "cases" / f"{case}.csv"
        cmd = bench.loadgen_cmd(handle.port, "ws", members, duration_s, bench.args.warmup,
                                scenario, csv_path, bench.out / "histograms" / f"{case}.hgrm",
                                handle.sampling_args())
        cmd += ["--path", "/chat", "--rooms", "1", "--payload", str(PAYLOAD_BYTES),
                "--timeout", DRAIN]
        if idle:
            cmd += ["--slow-clients", str(idle), "--slow-mode", "idle"]
        budget_s = duration_s + 120
        outcome, row = bench.run_loadgen(pinned(cmd, bench.loadgen_cpu), csv_path, budget_s)
    if handle in LIVE_SERVERS:
        LIVE_SERVERS.remove(handle)
    stop_error, stopped = handle.stop()
    if stop_error and not error:
        outcome = stop_error if outcome == "ok" else f"{outcome}; {stop_error}"
    closed_by_server = {"server_evicted": evicted(stopped)}
    if row is not None:
        row.update(closed_by_server)
    row = bench.record_row(row, {"label": scenario, "protocol": "ws",
                                 "connections": str(members), "slow_clients": str(idle),
                                 "slow_mode": "idle", "payload_bytes": str(PAYLOAD_BYTES),
                                 **closed_by_server},
                           server, scenario, outcome)
    extra = "" if outcome == "ok" else f"  [{outcome}]"
    print(f"[{tag}] {server:<8} {scenario:<18} {describe_deliveries(row)}"
          f"  ({describe_result(row)}){extra}", flush=True)
    return row


def evicted(stopped: str) -> str:
    """The members the server closed past --max-backlog, from its last line: echo-server's
    "stopped ... evicted=N", the peer's "closed N members past the backlog"; "" if neither."""
    found = re.search(r"\bevicted=(\d+)", stopped) or re.match(r"closed (\d+) members", stopped)
    return found.group(1) if found else ""


def describe_deliveries(row: dict[str, str]) -> str:
    rate, lost = row.get("deliveries_per_s") or "", row.get("deliveries_lost") or ""
    if not rate:
        return "no deliveries"
    closed = row.get("slow_closed") or ""
    text = f"{float(rate):,.0f} deliveries/s, lost {lost or '-'}"
    return text + (f", slow closed {closed}" if closed else "")


def med(rows: list[dict[str, str]], key: str) -> float | None:
    values = column_values([row for row in rows if row.get("outcome") == "ok"], key)
    return median(values) if values else None


def summary(servers: list[str], plan, rows) -> list[str]:
    repeats = len(next(iter(rows.values()), []))
    lines = [f"chat: one room per case, closed loop, {PAYLOAD_BYTES} B messages; deliveries/s "
             f"and p99 fan-out latency (intended send to receipt), "
             f"{'median of ' + str(repeats) + ' runs' if repeats > 1 else 'one run'} each",
             f"  {'case':<20}{'server':<10}{'deliveries/s':>14}{'p99 us':>14}{'lost':>12}"
             f"{'evicted':>10}{'peak RSS MiB':>14}"]
    for name, _, _ in plan:
        for server in servers:
            got = rows.get((server, name), [])
            rate, p99 = med(got, "deliveries_per_s"), med(got, "latency_p99_us")
            lost, closed = med(got, "deliveries_lost"), med(got, "server_evicted")
            rss = med(got, "server_rss_peak_kb")
            if rate is None:
                lines.append(f"  {name:<20}{server:<10}{'failed':>14}")
                continue
            lines.append(f"  {name:<20}{server:<10}{rate:>14,.0f}"
                         f"{(f'{p99:,.0f}' if p99 is not None else '-'):>14}"
                         f"{(f'{lost:,.0f}' if lost is not None else '-'):>12}"
                         f"{(f'{closed:,.0f}' if closed is not None else '-'):>10}"
                         f"{(f'{rss / 1024:,.1f}' if rss is not None else '-'):>14}")
    lines.append("")
    lines += ratio_lines(servers, plan, rows)
    return lines


def memory_line(server: str, calm_rows, idle_rows) -> list[str]:
    """The server's peak RSS with the idle members against without, per idle member,
    against what a backlog of MAX_BACKLOG_KB can hold: twice that, a growing buffer's
    capacity being at most double what it holds."""
    calm, idle = med(calm_rows, "server_rss_peak_kb"), med(idle_rows, "server_rss_peak_kb")
    if not calm or not idle:
        return []
    each = (idle - calm) / IDLE_MEMBERS
    verdict = "within" if each <= 2 * MAX_BACKLOG_KB else "OVER"
    return [f"{server}: peak RSS with {IDLE_MEMBERS} idle members {idle / 1024:,.1f} MiB, "
            f"without {calm / 1024:,.1f} MiB: {each / 1024:,.2f} MiB per idle member (bound: "
            f"its {MAX_BACKLOG} backlog, at most {2 * MAX_BACKLOG_KB // 1024} MiB with the "
            f"buffer's spare capacity): {verdict}"]


def ratio_lines(servers: list[str], plan, rows) -> list[str]:
    """Our models' deliveries/s over the peer's, per room; what idle members cost the
    others' p99; loadgen's CPU per delivery against the libuv server's."""
    lines = []
    for server in servers[1:]:
        for name, _, idle in plan:
            if idle:
                continue
            ours = med(rows.get((server, name), []), "deliveries_per_s")
            node = med(rows.get((PEER, name), []), "deliveries_per_s")
            if ours and node:
                verdict = "met" if ours / node >= 2.0 else "MISSED"
                lines.append(f"{server} over the Node peer, {name}: {ours:,.0f} / {node:,.0f} = "
                             f"{ours / node:.2f}x deliveries/s (target >= 2x): {verdict}")
            else:
                lines.append(f"{server} over the Node peer, {name}: not measured (a run failed)")
    if len(servers) == 1:
        lines.append("no echo-server model lists ws among its protocols yet: the Node peer "
                     "alone was measured, and no ratio can be stated")
    idle_name = f"chat-{IDLE_ROOM}-idle-{IDLE_MEMBERS}"
    for server in servers:
        calm_rows = rows.get((server, f"chat-{IDLE_ROOM}"), [])
        idle_rows = rows.get((server, idle_name), [])
        calm, idle = med(calm_rows, "latency_p99_us"), med(idle_rows, "latency_p99_us")
        closed = med(idle_rows, "server_evicted")
        closed_text = f"; idle members it evicted: {closed:.0f}" if closed is not None else ""
        if calm and idle:
            verdict = "met" if idle / calm <= 2.0 else "MISSED"
            lines.append(f"{server}: p99 with {IDLE_MEMBERS} idle members {idle:,.0f} us over "
                         f"{calm:,.0f} us without = {idle / calm:.2f}x (target <= 2x): "
                         f"{verdict}{closed_text}")
        elif calm and not med(idle_rows, "deliveries_per_s"):
            lines.append(f"{server}: with {IDLE_MEMBERS} idle members nothing was delivered "
                         f"(target: p99 <= 2x of {calm:,.0f} us): MISSED{closed_text}")
        lines += memory_line(server, calm_rows, idle_rows)
    if "libuv" in servers:
        name = f"chat-{ROOM_SIZES[-1]}"
        got = rows.get(("libuv", name), [])
        loadgen_cpu, server_cpu = med(got, "loadgen_cpu_s"), med(got, "server_cpu_s")
        deliveries, seconds = med(got, "deliveries_per_s"), med(got, "duration_s")
        if loadgen_cpu and server_cpu and deliveries and seconds:
            per = 1e9 / (deliveries * seconds)
            verdict = "met" if loadgen_cpu <= server_cpu else "MISSED"
            lines.append(f"loadgen CPU per delivery {loadgen_cpu * per:.0f} ns against the libuv "
                         f"server's {server_cpu * per:.0f} ns ({name}; target: no more): {verdict}")
    return lines

