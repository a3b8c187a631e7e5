"""bench/run's command line: its options with their units and defaults
(define_options), their checks and the defaults a scenario kind implies (parse_args,
check_matrix, choose_models, parse_server_args), and main(), which prints the runs
(--list) or makes them. A usage error is one line on stderr and exit 2, before
anything runs.

Standard library only."""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import cases
import cgroups
import servers
from scenarios import UsageError, default_models, list_lines, matrix, parse_duration_s
from servers import ECHO_SERVER, FLOOR, LOADGEN, ROOT, SERVER_ARGS, registered_models


def on_terminate(signum: int, _frame) -> None:
    raise SystemExit(128 + signum)


def define_options() -> argparse.ArgumentParser:
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
                             "thread, libuv) or chat (loadgen's fan-out workload, rooms of 10, 100 "
                             "and 1,000 members and one with 100 idle members, against the Node "
                             "peer bench/ws-peer and every model with a ws form) or scale-out "
                             "(epoll under 1, 2 and 4 loadgen ranks under mpirun: its capacity by "
                             "load ranks) or accept (prefork and reactors in each --accept "
                             "mode with 2 and 4 workers, under connection churn and a steady "
                             "64 connections: each worker's share, Jain's index, connect "
                             "latency, throughput; about 2 minutes a repeat) or io_uring (io_uring "
                             "against epoll in 3 alternating rounds: 16 connections, 1,000 "
                             "trickling clients, 64 KiB messages, RSS with 10,000 idle clients, "
                             "as ratios); c10k also measures each model's CPU with its 10,000 "
                             "clients idle and no load for 10 s")
    parser.add_argument("--models", default="",
                        help="comma-separated models to run (default: every registered model)")
    parser.add_argument("--duration", default=None,
                        help="measured seconds per case, e.g. 5s (default 5s; 3s with --quick; "
                             "2s for latency and accept)")
    parser.add_argument("--warmup", default=None,
                        help="warm-up per case, excluded (default 1s; latency and accept: "
                             "500ms; the http scenario has none, as wrk has none)")
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
    parser.add_argument("--mpi-np", type=int, default=0, metavar="K",
                        help="run every loadgen as K ranks under mpirun (Open MPI), the "
                             "connections, slow clients and rate split over them and their "
                             "histograms merged; see docs/loadgen.md")
    parser.add_argument("--hostfile", default=None, metavar="FILE",
                        help="with --mpi-np or --scenario scale-out: mpirun's hostfile, so "
                             "that the ranks run on those machines; needs --target")
    parser.add_argument("--target", default=None, metavar="ADDR",
                        help="with --hostfile: this machine's address as the ranks reach "
                             "it; the servers then listen on every address (0.0.0.0)")
    parser.add_argument("--no-plots", action="store_true", help="skip plots/plot")
    parser.add_argument("--no-targets", dest="targets", action="store_false",
                        help="skip the performance-target runs and ratios (they run with the "
                             "default matrix only)")
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The checked command line, with the scenarios, models and durations it implies;
    raises UsageError naming the flag, the value and the reason."""
    args = define_options().parse_args(argv)
    args.command = " ".join(["bench/run", *argv])
    kind = check_matrix(args)
    known = registered_models()
    if not known:
        raise UsageError(f"cannot list models from {ECHO_SERVER}; was the build successful?")
    if kind == "accept":
        check_accept(args)
    choose_models(args, kind, known)
    args.server_args = parse_server_args(args.server_args, known)
    # The chat scenario always has the Node peer; models with a ws form join it.
    if not args.model_list and kind != "chat":
        raise UsageError(f"no model of {ECHO_SERVER.name} serves {args.scenarios[0].protocol}")
    # The targets take three alternating rounds of four runs (about a minute and a
    # half): part of the default matrix, left out of --quick to keep it within 3 minutes.
    if kind != "default":
        args.targets = False
    check_mpi(args, kind)
    if args.out is None:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H-%M-%SZ")
        args.out = ROOT / "results" / stamp
    return args


def check_matrix(args: argparse.Namespace) -> str:
    """Checks the matrix flags and sets scenarios, durations and warm-up; returns the
    scenario kind."""
    if not 1 <= args.repeat <= 100:
        raise UsageError(f"--repeat: {args.repeat} is not from 1 to 100")
    kind = args.scenario or ("quick" if args.quick else "default")
    if args.quick and args.scenario and args.scenario not in ("quick", "latency"):
        raise UsageError("--quick and --scenario name different matrices")
    args.slo_p99_us = parse_duration_s(args.slo_p99, "--slo-p99") * 1e6
    args.scenarios = matrix(kind)
    if args.repeat > 1 and kind in ("http", "generator", "io_uring"):
        raise UsageError(f"--repeat: the {kind} scenario runs its own alternating rounds")
    args.duration_s = parse_duration_s(args.duration or ("3s" if kind == "quick" else
                                                         "2s" if kind in ("latency", "accept")
                                                         else "5s"))
    args.warmup = args.warmup or ("500ms" if kind in ("latency", "accept") else "1s")
    parse_duration_s(args.warmup, "--warmup")
    return kind


def check_mpi(args: argparse.Namespace, kind: str) -> None:
    """--mpi-np, --hostfile and --target against each other and against this machine."""
    if not 0 <= args.mpi_np <= 1024:
        raise UsageError(f"--mpi-np: {args.mpi_np} is not from 1 to 1024")
    ranked = kind == "scale-out"
    if args.mpi_np and kind in ("http", "generator", "scale-out"):
        raise UsageError(f"--mpi-np: not with the {kind} scenario")
    if args.hostfile and not (args.mpi_np or ranked):
        raise UsageError("--hostfile: applies with --mpi-np or --scenario scale-out")
    if bool(args.hostfile) != bool(args.target):
        raise UsageError("--hostfile and --target go together (the ranks elsewhere must "
                         "reach the server at an address of this machine)")
    if args.hostfile and not Path(args.hostfile).is_file():
        raise UsageError(f"--hostfile: {args.hostfile} is not a file")
    if args.mpi_np or ranked:
        problem = servers.mpi_problem()
        if problem:
            raise UsageError(f"{'--mpi-np' if args.mpi_np else '--scenario scale-out'}: "
                             f"{problem}")
    if args.target:
        servers.TARGET.update(listen="0.0.0.0", host=args.target)


def check_accept(args: argparse.Namespace) -> None:
    """The accept scenario: its cases in the modes echo-server offers, and its models
    those that take --accept (all of them unless --models names some)."""
    models, modes = servers.accept_flag()
    if not models:
        raise UsageError(f"--scenario accept: {ECHO_SERVER.name} has no --accept flag")
    args.scenarios = matrix("accept", modes)
    if not args.models:
        args.models = ",".join(models)
    named = [m.strip() for m in args.models.split(",") if m.strip()]
    refused = [m for m in named if m not in models]
    if refused:
        raise UsageError(f"--models: not a model with --accept: {', '.join(refused)} (the "
                         f"accept scenario runs {', '.join(models)})")


def choose_models(args: argparse.Namespace, kind: str, known: dict[str, set[str]]) -> None:
    """Sets model_list: --models, each checked, or the kind's own; a model that does not
    serve the kind's protocol is an error when named, left out otherwise."""
    if args.models:
        args.model_list = [m.strip() for m in args.models.split(",") if m.strip()]
        unknown = [m for m in args.model_list if m not in known]
        if unknown:
            raise UsageError(f"--models: unknown model {', '.join(unknown)} "
                             f"(known: {', '.join(known)})")
    else:
        args.model_list = default_models(kind, args.quick, known)
    protocol = args.scenarios[0].protocol
    refused = [m for m in args.model_list if protocol not in known[m]]
    if refused and args.models:
        raise UsageError(f"--models: {', '.join(refused)} do not serve {protocol} "
                         "(see echo-server --list-models)")
    args.model_list = [m for m in args.model_list if m not in refused]


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
        return cases.run(cases.Bench(args))
    except KeyboardInterrupt:
        print("bench/run: interrupted; stopping the servers it started", file=sys.stderr)
        return 130
    finally:
        servers.stop_all()
        cgroups.remove_parents()
