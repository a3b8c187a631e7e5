"""The bench's scenario table: what each matrix kind (--scenario) runs, one Scenario row
per case, the durations those rows and the command line are written in, and what
--list says of each kind. Declarations only: nothing here starts a process.

Standard library only."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import accept_modes
import chat_scenario
import generator as generator_scenario
import latency

FAST_CONNECTIONS = 16
TARGET_ROUNDS = 3  # runs of each side of a performance-target ratio
HTTP_CONNECTIONS = 50  # wrk's and loadgen's connections in the http scenario
HTTP_ROUNDS = 2  # runs of each generator against each server, alternating
SCALE_OUT_RANKS = (1, 2, 4)  # load ranks of the scale-out scenario
SCALE_OUT_CONNECTIONS = 64
IDLE_CPU_WINDOW_S = 10  # the c10k scenario's quiet run: idle clients, no load


class UsageError(Exception):
    pass


@dataclass
class Scenario:
    name: str
    slow_clients: int = 0
    slow_mode: str = "idle"
    payload_bytes: int = 64
    connections: int = FAST_CONNECTIONS
    requests_per_connection: int = 0
    warmup: str | None = None  # overrides --warmup: time for the server to take every client
    pinned: bool = True  # False: server and loadgen may use every CPU (the cores scenario)
    protocol: str = "tcp"
    extra: list[str] = field(default_factory=list)
    ranks: int = 0  # load ranks under mpirun (the scale-out scenario); 0: --mpi-np's
    server_flags: list[str] = field(default_factory=list)  # echo-server's, for this case
    # Seconds of a quiet run before the loaded one: the slow clients alone, no load,
    # and the server's CPU over it (results.csv's idle_cpu_s); 0: none.
    idle_cpu_window_s: float = 0

    def describe(self) -> str:
        parts = [] if self.protocol == "tcp" else [self.protocol]
        parts += [f"conns={self.connections}", f"slow={self.slow_clients}"]
        if self.slow_clients:
            parts.append(self.slow_mode)
        parts.append(f"payload={self.payload_bytes}B")
        if self.warmup:
            parts.append(f"warmup {self.warmup}")
        if not self.pinned:
            parts.append("unpinned: server and loadgen share every CPU")
        if self.requests_per_connection:
            parts.append(f"{self.requests_per_connection} req/conn")
        if self.extra:
            parts.append(" ".join(self.extra))
        if self.ranks:
            parts.append(f"{self.ranks} loadgen rank(s) under mpirun")
        if self.server_flags:
            parts.append("server " + " ".join(self.server_flags))
        if self.idle_cpu_window_s:
            parts.append(f"after a quiet run ({self.idle_cpu_window_s:g} s, no load: idle CPU)")
        return " ".join(parts)

    def loadgen_flags(self) -> list[str]:
        """loadgen's flags for this load, after those every case's command has."""
        flags = [] if self.protocol == "http" else ["--payload", str(self.payload_bytes)]
        if self.slow_clients:
            flags += ["--slow-clients", str(self.slow_clients), "--slow-mode", self.slow_mode]
        if self.requests_per_connection:
            flags += ["--requests-per-connection", str(self.requests_per_connection)]
        return flags + self.extra


def accept_scenario(case: accept_modes.Case) -> Scenario:
    """One case of the accept scenario: its load, and the server's workers and mode."""
    flags = ["--workers", str(case.workers), "--accept", case.mode]
    if case.load == "churn":
        return Scenario(accept_modes.scenario_name(case), server_flags=flags,
                        connections=accept_modes.CHURN_CONNECTIONS, requests_per_connection=1)
    return Scenario(accept_modes.scenario_name(case), server_flags=flags,
                    connections=accept_modes.STEADY_CONNECTIONS)


def matrix(kind: str, accept_mode_names: list[str] | None = None) -> list[Scenario]:
    """The scenarios of one matrix kind: quick, default, c10k, cores, udp, http,
    generator, latency or accept (with the --accept modes echo-server offers)."""
    if kind == "quick":
        return [Scenario(f"idle-{n}", slow_clients=n) for n in (0, 10, 1000)]
    if kind == "c10k":
        # The kernel completes the handshakes, but a model may need seconds to accept
        # 10,000 clients (fork: one fork each); measure it once it has taken them. First,
        # what the model burns holding them with nothing to do (a timer-driven loop or a
        # busy poll shows there).
        return [Scenario("idle-10000", slow_clients=10000, warmup="10s",
                         idle_cpu_window_s=IDLE_CPU_WINDOW_S)]
    if kind == "cores":
        # What a second core buys: the one-loop models against the multi-loop ones with
        # 64 busy connections. Nothing is pinned, so loadgen competes for the same
        # cores: the comparison holds between models, not against the machine's peak.
        return [Scenario("conns-64-unpinned", connections=64, pinned=False,
                         extra=["--threads", "2"])]
    if kind == "udp":
        # Closed loop: one datagram per socket in flight, as the TCP ping-pong. Open loop:
        # a fixed schedule with many in flight, where a server that falls behind loses
        # datagrams (its socket buffer overflows) instead of slowing the sender down as
        # TCP would.
        return [Scenario("udp-closed", protocol="udp"),
                Scenario("udp-open-100k", protocol="udp",
                         extra=["--rate", "100000", "--max-inflight", "64", "--timeout", "1s"])]
    if kind == "http":
        # Run by http_scenario.run, not by the model x scenario loop: loadgen and wrk take
        # turns against nginx and our servers.
        return [Scenario("http", protocol="http", connections=HTTP_CONNECTIONS)]
    if kind == "generator":
        # Run by generator.run, not by the model x scenario loop: loadgen's own cost
        # and schedule against the epoll (tcp) and libuv (http) models.
        return [Scenario("generator", connections=generator_scenario.CONNECTIONS)]
    if kind == "chat":
        # Run by chat_scenario.run: the fan-out workload against the Node peer and every
        # model with a ws form.
        return [Scenario("chat", protocol="ws")]
    if kind == "latency":
        # Run by latency.run: steps at fractions of each model's own capacity.
        return [Scenario("latency", connections=latency.CONNECTIONS)]
    if kind == "scale-out":
        # The same server under 1, 2 and 4 load ranks (mpirun), the same 64 connections
        # split over them, one loop each: does the capacity grow once loadgen is not the
        # limit? On one machine the ranks share the CPUs the server does not use.
        return [Scenario(f"ranks-{k}", connections=SCALE_OUT_CONNECTIONS, ranks=k,
                         extra=["--threads", "1"]) for k in SCALE_OUT_RANKS]
    if kind == "accept":
        return [accept_scenario(case) for case in accept_modes.cases(accept_mode_names or [])]
    if kind == "io_uring":
        # Run by uring_scenario.run: io_uring and epoll alternating, as ratios.
        return [Scenario("io_uring")]
    if kind == "default":
        cases = [Scenario(f"idle-{n}", slow_clients=n) for n in (0, 10, 100, 1000, 5000)]
        cases += [Scenario(f"trickle-{n}", slow_clients=n, slow_mode="trickle")
                  for n in (100, 1000)]
        cases += [Scenario(f"payload-{b}", payload_bytes=b) for b in (4096, 65536)]
        cases.append(Scenario("churn", requests_per_connection=1))
        return cases
    raise UsageError(f"--scenario: unknown scenario '{kind}' "
                     "(quick, default, c10k, cores, udp, http, generator, latency, chat, "
                     "scale-out, accept, io_uring)")


def default_models(kind: str, quick: bool, known: dict[str, set[str]]) -> list[str]:
    """The models a kind runs when --models names none, of those echo-server has."""
    if kind == "cores":
        return [m for m in ("epoll", "libuv", "reactors", "prefork") if m in known]
    if kind == "http":
        return ["libuv"]
    if kind == "scale-out":
        return [m for m in ("epoll",) if m in known]
    if kind == "io_uring":
        return [m for m in ("io_uring", "epoll") if m in known]
    if kind == "latency" and quick:
        return [m for m in latency.QUICK_MODELS if m in known]
    return list(known)


def parse_duration_s(text: str, flag: str = "--duration") -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(us|ms|s|m)?", text.strip())
    if not match:
        raise UsageError(f"{flag}: '{text}' is not a duration (e.g. 500ms, 5s, 1m)")
    value = float(match.group(1))
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[match.group(2) or "s"]
    seconds = value * scale
    if seconds <= 0:
        raise UsageError(f"{flag}: '{text}' must be more than zero")
    return seconds


def list_lines(args) -> list[str]:
    """What --list prints: the runs a checked command line (cli.parse_args) would make."""
    if args.scenarios[0].protocol == "http":
        servers = ["nginx"] + args.model_list
        return [f"{HTTP_ROUNDS * len(servers) * 2} runs, {args.duration_s:g} s each, no "
                f"warm-up: loadgen and wrk ({HTTP_CONNECTIONS} connections, 1 thread, GET /) "
                f"against {', '.join(servers)}, {HTTP_ROUNDS} alternating rounds"]
    if args.scenarios[0].name == "latency":
        steps = 1 + len(latency.FRACTIONS) + latency.BISECT_STEPS
        return [f"the latency scenario: {', '.join(args.model_list)}, each with "
                f"{' and '.join(str(n) for n in latency.POPULATIONS)} slow clients: a "
                f"closed-loop probe, open-loop steps at "
                f"{', '.join(f'{f:.0%}' for f in latency.FRACTIONS)} of it and "
                f"{latency.BISECT_STEPS} bisection steps, about {steps} runs of "
                f"{args.duration_s:g} s (+ {args.warmup} warm-up) each"]
    if args.scenarios[0].name == "chat":
        models, left_out = chat_scenario.relaying(args.model_list)
        runs = (len(models) + 1) * len(chat_scenario.cases()) * args.repeat
        lines = [f"{chat_scenario.describe()}: {runs} runs of {args.duration_s:g} s (+ "
                 f"{args.warmup} warm-up, + {chat_scenario.DRAIN} drain) against "
                 f"{', '.join([chat_scenario.PEER] + models)}"]
        if left_out:
            lines.append(f"  left out (ws without rooms of more than one): {', '.join(left_out)}")
        return lines
    if args.scenarios[0].name == "io_uring":
        import uring_scenario  # it imports this module
        return [f"{uring_scenario.describe()}; {args.duration_s:g} s runs (+ {args.warmup} "
                "warm-up; 10 s with 10,000 idle clients)"]
    if args.scenarios[0].name == "generator":
        return [f"the generator scenario: {TARGET_ROUNDS} alternating rounds of loadgen runs "
                f"({args.duration_s:g} s each + {args.warmup} warm-up) against epoll (tcp), "
                "libuv (http) and, for the sampling check, epoll and fork"]
    total = len(args.model_list) * len(args.scenarios)
    return [f"{total} cases, {args.duration_s:g} s each (+ {args.warmup} warm-up), "
            f"models: {', '.join(args.model_list)}"
            ] + [f"  {s.name:<14} {s.describe()}" for s in args.scenarios]
