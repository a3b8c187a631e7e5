"""What a run folder says of where it ran: machine.txt (CPU, kernel, compiler, libuv,
pinning, descriptor limits, how the servers' cost is read, the command line), the git
revision every row carries, and bench/floor's calibration of the loopback floor that
every row's floor_rtt_us comes from.

Standard library only."""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import sys
from pathlib import Path

import peers
from servers import FLOOR, ROOT, run_text, server_cost_method


def git_revision() -> str:
    """The checkout's short revision, with '-dirty' when tracked files have changed."""
    rev = run_text(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]).strip()
    if run_text(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"]):
        rev += "-dirty"
    return rev


def parse_floor(text: str) -> dict[str, float]:
    values = {}
    for line in text.splitlines():
        key, _, value = line.partition("=")
        try:
            values[key.strip()] = float(value)
        except ValueError:
            pass
    return values


def measure_floor() -> dict[str, float]:
    """bench/floor's numbers (empty when it failed: then floor_rtt_us stays empty)."""
    print("floor: measuring loopback round trips and system-call cost", flush=True)
    floor = parse_floor(run_text([str(FLOOR)], timeout=120))
    if not floor:
        print("floor: bench/floor failed; floor_rtt_us stays empty", file=sys.stderr)
    return floor


def pinning(bench) -> str:
    """Where the run put the server and the load generator, in machine.txt's words."""
    if not any(s.pinned for s in bench.args.scenarios):
        return "none: this matrix lets server and loadgen share every CPU"
    if bench.cpus < 2:
        return "none: only one CPU, server and loadgen share it"
    generator = ("load generator (loadgen or wrk)" if bench.args.scenarios[0].protocol == "http"
                 else "loadgen")
    return f"server on CPU {bench.server_cpu}, {generator} on CPU {bench.loadgen_cpu} (taskset)"


def write_machine(bench) -> None:
    """Writes machine.txt into the run folder of `bench` (cases.Bench)."""
    cpu_model = ""
    try:
        cpu_model = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text()).group(1)
    except (OSError, AttributeError):
        pass
    compiler = run_text(["c++", "--version"]).splitlines()[:1]
    lines = [
        f"run_id: {bench.run_id}",
        f"date_utc: {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}",
        f"host: {platform.node()}",
        f"cpu_model: {cpu_model}",
        f"cpus_online: {os.cpu_count()}",
        f"cpus_usable: {bench.cpus}",
        f"kernel: {platform.release()}",
        f"compiler: {compiler[0] if compiler else ''}",
        f"libuv: {run_text(['pkg-config', '--modversion', 'libuv']).strip()}",
        f"git_rev: {bench.git_rev}",
        f"pinning: {pinning(bench)}",
        f"fd_limit_soft: {run_text(['sh', '-c', 'ulimit -Sn']).strip()}",
        f"fd_limit_hard: {run_text(['sh', '-c', 'ulimit -Hn']).strip()}",
        f"somaxconn: {Path('/proc/sys/net/core/somaxconn').read_text().strip()}",
        f"server_cost: {server_cost_method()}",
        f"command: {bench.args.command}",
    ]
    if bench.args.scenarios[0].protocol == "http":
        # wrk --version prints on stdout, nginx -v on stderr.
        for name, cmd in (("wrk", ["wrk", "--version"]),
                          ("nginx", [peers.nginx_binary(), "-v"])):
            first = run_text(cmd, stderr=True).strip().splitlines()
            lines.append(f"{name}: {first[0] if first else ''}")
    lines += [f"floor.{k}: {v:g}" for k, v in bench.floor.items()]
    (bench.out / "machine.txt").write_text("\n".join(lines) + "\n")
