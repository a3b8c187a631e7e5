"""The programs the bench runs (from the build BENCH_BUILD names) and the server
processes it starts: echo-server in a cgroup of its own where the machine allows it
(Server), the servers still running (stopped by main() however the run ends), the
extra flags --server-args gives a model, and what /proc says about processes.

Standard library only."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from functools import cache
from pathlib import Path

import cgroups
from cgroups import Cgroup, unique_name

ROOT = Path(__file__).resolve().parent.parent
# The build whose binaries the bench runs; tests point it at their own build tree.
BUILD = Path(os.environ.get("BENCH_BUILD") or ROOT / "build")
ECHO_SERVER = BUILD / "echo-server"
LOADGEN = BUILD / "loadgen"
FLOOR = BUILD / "bench" / "floor"
PLOT = ROOT / "plots" / "plot"

# Servers (ours and nginx) started and not yet stopped: stopped by main() however the
# run ends, so an interrupted bench leaves no process behind. loadgen and wrk run
# under subprocess.run, which kills its child when an exception (SIGINT, or SIGTERM
# turned into SystemExit) interrupts the wait.
LIVE_SERVERS: list = []

# Extra echo-server flags per model, from --server-args (e.g. a model made slower on
# purpose to check that bench/compare notices): set once by main().
SERVER_ARGS: dict[str, list[str]] = {}

# Where our servers listen and loadgen aims: loopback, unless --hostfile sends load
# from other machines (then the servers listen on every address and loadgen aims at
# --target, with --allow-remote). Set once by main().
TARGET = {"listen": "127.0.0.1", "host": "127.0.0.1"}

# Open MPI refuses to start as root unless told to; the bench runs as root to install
# packages and make cgroups.
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_btl_base_warn_component_unused": "0"}


def under_mpirun(cmd: list[str], ranks: int, hostfile: str | None) -> list[str]:
    """A loadgen command run as `ranks` ranks by mpirun (1 or more; 0: as it is). Open
    MPI's own binding is off, so that the ranks keep the CPUs the command is pinned to
    (taskset around mpirun) and nothing else; without a hostfile ranks may outnumber
    the CPUs."""
    if ranks <= 0:
        return cmd
    launcher = ["mpirun", "-np", str(ranks), "--bind-to", "none"]
    launcher += ["--hostfile", hostfile] if hostfile else ["--oversubscribe"]
    return launcher + cmd


def mpi_problem() -> str | None:
    """Why loadgen cannot run under mpirun here, or None."""
    if not run_text(["which", "mpirun"]).strip():
        return "no mpirun on PATH (Debian: openmpi-bin; tools/setup installs it)"
    if "Open MPI" not in run_text([str(LOADGEN), "--version"]):
        return f"{LOADGEN} was built without Open MPI (libopenmpi-dev)"
    return None


def run_text(cmd: list[str], timeout: float = 30, stderr: bool = False) -> str:
    """What cmd printed on stdout (and on stderr too, when asked); '' if it cannot run."""
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return ""
    return result.stdout + result.stderr if stderr else result.stdout


@cache
def list_models() -> list[list[str]]:
    """echo-server --list-models as rows of words: MODEL, PROTOCOLS, TRAITS, HOW...;
    asked once per run, since the binary does not change during it."""
    out = run_text([str(ECHO_SERVER), "--list-models"])
    return [words for words in (line.split() for line in out.splitlines())
            if len(words) >= 3 and words[0] != "MODEL"]


def registered_models() -> dict[str, set[str]]:
    """Every model echo-server has, with the protocols it serves."""
    return {words[0]: set(words[1].split(",")) for words in list_models()}


@cache
def accept_flag() -> tuple[list[str], list[str]]:
    """The models that take --accept and its modes, as echo-server --help says them
    (its line "--accept TEXT:{shared,...}" and the models its help text begins with);
    ([], []) when it has no such flag."""
    lines = run_text([str(ECHO_SERVER), "--help"]).splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"\s*--accept\s+\S*\{([\w,]+)\}", line)
        if match and i + 1 < len(lines):
            models = lines[i + 1].strip().split(":", 1)[0]
            return ([m.strip() for m in models.split(",")], match.group(1).split(","))
    return [], []


def model_traits() -> dict[str, set[str]]:
    """Every model's traits, as the registry states them (task-per-client, event-loop...)."""
    return {words[0]: set(words[2].split(",")) for words in list_models()}


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))


def pinned(cmd: list[str], cpu: int | None) -> list[str]:
    return cmd if cpu is None else ["taskset", "-c", str(cpu)] + cmd


def descendants(pid: int) -> list[int]:
    """Every live descendant of pid, read from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if fields[0] == "Z":
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry))
    found, queue = [], [pid]
    while queue:
        for child in parents.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def tree_cpu_s(pid: int) -> float:
    """User plus system CPU seconds of pid and its live descendants, from /proc."""
    total = 0.0
    for p in [pid] + descendants(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def udp_rcvbuf_errors() -> int | None:
    """The kernel's count of UDP datagrams dropped for a full receive buffer, machine
    wide (/proc/net/snmp): where a lost datagram went when no program dropped it."""
    try:
        lines = [l.split() for l in Path("/proc/net/snmp").read_text().splitlines()
                 if l.startswith("Udp:")]
        return int(lines[1][lines[0].index("RcvbufErrors")])
    except (OSError, IndexError, ValueError):
        return None


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:].split()[0] != "Z"


# Why the servers' cost is read from /proc rather than from cgroups ("" while cgroups work):
# set by the first server that could not have a cgroup, and said in machine.txt.
CGROUP_PROBLEM = ""


def probe_cgroups() -> None:
    """Learns, once per run, whether this machine lets servers have cgroups."""
    global CGROUP_PROBLEM
    CGROUP_PROBLEM = cgroups.probe()


def server_cost_method() -> str:
    if CGROUP_PROBLEM:
        return f"/proc walks by loadgen ({CGROUP_PROBLEM})"
    return "each server in a cgroup of its own; loadgen --server-cgroup reads its counters " \
           "at the window's edges"


def terminate(proc: subprocess.Popen, timeout_s: float = 10) -> tuple[str, str] | None:
    """SIGTERM to one process we started, and its (stdout, stderr) once it exited; None
    when it outlived `timeout_s` and was killed (and reaped)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None


class Server:
    """One echo-server process we started, in a cgroup of its own where the machine
    allows it: readiness, port, clean stop."""

    def __init__(self, model: str, cpu: int | None, max_connections: int, protocol: str = "tcp",
                 flags: list[str] | None = None):
        global CGROUP_PROBLEM
        cmd = [str(ECHO_SERVER), "--model", model, "--host", TARGET["listen"], "--port", "0",
               "--protocol", protocol]
        if max_connections:
            cmd += ["--max-connections", str(max_connections)]
        cmd += (flags or []) + SERVER_ARGS.get(model, [])
        self.cgroup = None
        if not CGROUP_PROBLEM:
            self.cgroup, CGROUP_PROBLEM = Cgroup.create(unique_name(model))
        if self.cgroup:
            cmd = self.cgroup.wrap(cmd)
        self.proc = subprocess.Popen(pinned(cmd, cpu), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.port = 0
        self.children: set[int] = set()
        LIVE_SERVERS.append(self)

    def wait_ready(self, timeout_s: float = 10) -> str | None:
        """Reads the 'listening on HOST:PORT' line; returns an error text or None."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if ready:
                line = self.proc.stdout.readline()
                match = re.match(r"listening on .*:(\d+) model=", line)
                if match:
                    self.port = int(match.group(1))
                    return None
                if not line:
                    break
        err = self.proc.stderr.read() if self.proc.poll() is not None else ""
        return f"server not ready: {err.strip() or 'no listening line'}"

    def note_children(self) -> None:
        self.children.update(descendants(self.proc.pid))

    def sampling_args(self) -> list[str]:
        """loadgen's flags to measure this server."""
        return ["--server-pid", str(self.proc.pid)] + (["--server-cgroup"] if self.cgroup else [])

    def stop(self) -> tuple[str | None, str]:
        """SIGTERM, wait, check exit 0 and that no child is left; returns (error, summary)."""
        if self in LIVE_SERVERS:
            LIVE_SERVERS.remove(self)
        self.note_children()
        ended = terminate(self.proc)
        if ended is None:
            return "server did not exit within 10 s of SIGTERM", ""
        out, err = ended
        summary = next((l for l in out.splitlines() if l.startswith("stopped")), "")
        left = [pid for pid in self.children if alive(pid)]
        for pid in left:  # only our server's own children, by PID
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if self.cgroup and not self.cgroup.remove():
            print(f"bench/run: could not remove the cgroup {self.cgroup.dirs[0]}",
                  file=sys.stderr, flush=True)
        if self.proc.returncode != 0:
            return f"server exit {self.proc.returncode}: {err.strip()[:200]}", summary
        if left:
            return f"server left {len(left)} processes behind", summary
        return None, summary


def max_connections_guard(model: str, wanted: int) -> int:
    """A cap for the models that spend a process or a thread per client (the registry's
    task-per-client trait), so a c10k run cannot exhaust this machine: processes and threads
    are limited by pid_max/threads-max and by memory (a conservative 512 KiB each)."""
    if "task-per-client" not in model_traits().get(model, set()):
        return 0
    try:
        pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
        threads_max = int(Path("/proc/sys/kernel/threads-max").read_text())
        meminfo = Path("/proc/meminfo").read_text()
        available_kb = int(re.search(r"MemAvailable:\s+(\d+)", meminfo).group(1))
    except (OSError, AttributeError, ValueError):
        return wanted
    in_use = sum(1 for e in os.listdir("/proc") if e.isdigit())
    by_ids = min(pid_max, threads_max) - in_use - 2000
    by_memory = available_kb // 2 // 512
    return max(1, min(wanted, by_ids, by_memory))


def stop_all() -> None:
    """Stops every server still running, ours and nginx (main's last step)."""
    for server in list(LIVE_SERVERS):
        server.stop()
