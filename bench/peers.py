"""The peers the bench measures our programs beside, tools users already trust: for the
http scenario nginx as a reference server and wrk as a reference load generator, both
from Debian's packages (nginx-light, wrk); for the chat scenario the WebSocket peer
bench/ws-peer (Node.js with npm's ws, its package installed by tools/setup with npm
ci). Nothing here installs, and nothing here is ours to tune beyond what
bench/nginx.conf.in and bench/ws-peer/server.js say.

Standard library only; every number comes from wrk's own counters (bench/wrk-report.lua)."""

from __future__ import annotations

import re
import select
import shutil
import socket
import subprocess
import time
from pathlib import Path

from cgroups import Cgroup, unique_name
from servers import terminate

HERE = Path(__file__).resolve().parent
NGINX_CONF = HERE / "nginx.conf.in"
WS_PEER = HERE / "ws-peer" / "server.js"
WRK_SCRIPT = HERE / "wrk-report.lua"


def free_loopback_port() -> int:
    """A port the kernel considers free on 127.0.0.1 now (nginx cannot take port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def nginx_binary() -> str:
    """Debian's nginx lives in /usr/sbin, which a non-root PATH may lack."""
    return shutil.which("nginx") or "/usr/sbin/nginx"


class Nginx:
    """One nginx process we started, with its own config in `scratch`."""

    def __init__(self, scratch: Path, cpu_prefix: list[str]):
        self.binary = nginx_binary()
        self.dir = scratch
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_loopback_port()
        conf = NGINX_CONF.read_text().replace("@DIR@", str(self.dir)).replace(
            "@PORT@", str(self.port))
        (self.dir / "nginx.conf").write_text(conf)
        log = self.dir / "error.log"
        cmd = [self.binary, "-p", str(self.dir), "-e", str(log), "-c", str(self.dir / "nginx.conf")]
        # Measured as our servers are: in a cgroup of its own where the machine allows it.
        self.cgroup, _ = Cgroup.create(unique_name("nginx"))
        if self.cgroup:
            cmd = self.cgroup.wrap(cmd)
        self.proc = subprocess.Popen(cpu_prefix + cmd, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)

    def sampling_args(self) -> list[str]:
        """loadgen's flags to measure this nginx."""
        return ["--server-pid", str(self.proc.pid)] + (["--server-cgroup"] if self.cgroup else [])

    def wait_ready(self) -> str | None:
        if wait_for_port(self.port, self.proc):
            return None
        self.stop()
        log = self.dir / "error.log"
        text = log.read_text().strip().splitlines()[-1:] if log.exists() else []
        return "nginx not ready: " + (text[0] if text else "no answer on its port")

    def stop(self) -> tuple[str | None, str]:
        """SIGTERM (nginx's fast shutdown) to the one process we started; returns
        (error, summary) as the bench's own Server.stop does (nginx has no summary)."""
        ended = terminate(self.proc)
        if self.cgroup:
            self.cgroup.remove()
        if ended is None:
            return "nginx did not exit within 10 s of SIGTERM", ""
        return None, ""


class WsPeer:
    """One ws peer process we started (node bench/ws-peer/server.js), measured as our
    servers are: in a cgroup of its own where the machine allows it."""

    def __init__(self, cpu_prefix: list[str], max_backlog: str):
        node = shutil.which("node") or "node"
        cmd = [node, str(WS_PEER), "--host", "127.0.0.1", "--port", "0",
               "--max-backlog", max_backlog]
        self.cgroup, _ = Cgroup.create(unique_name("node-ws"))
        if self.cgroup:
            cmd = self.cgroup.wrap(cmd)
        self.port = 0
        self.proc = subprocess.Popen(cpu_prefix + cmd, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)

    def sampling_args(self) -> list[str]:
        return ["--server-pid", str(self.proc.pid)] + (["--server-cgroup"] if self.cgroup else [])

    def wait_ready(self, timeout_s: float = 10) -> str | None:
        """Reads its 'listening on HOST:PORT' line; returns an error text or None."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.proc.poll() is None:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if ready:
                match = re.match(r"listening on .*:(\d+)", self.proc.stdout.readline())
                if match:
                    self.port = int(match.group(1))
                    return None
        error = self.stop()[0]
        return "ws peer not ready" + (f": {error}" if error else " (is node installed, and "
                                      "bench/ws-peer/node_modules there? tools/setup runs npm ci)")

    def stop(self) -> tuple[str | None, str]:
        """SIGTERM to the one process we started; returns (error, its summary line)."""
        ended = terminate(self.proc)
        if self.cgroup:
            self.cgroup.remove()
        if ended is None:
            return "ws peer did not exit within 10 s of SIGTERM", ""
        out, err = ended
        summary = next((l for l in out.splitlines() if l.startswith("closed ")), "")
        if self.proc.returncode != 0:
            return f"ws peer exit {self.proc.returncode}: {err.strip()[:200]}", summary
        return None, summary


def run_wrk(cpu_prefix: list[str], port: int, connections: int, duration_s: float,
            timeout_s: float) -> tuple[dict[str, float] | None, str]:
    """Runs wrk with one thread; returns (its numbers, an error text or '')."""
    cmd = cpu_prefix + ["wrk", "-t1", f"-c{connections}", f"-d{duration_s:g}s",
                        "-s", str(WRK_SCRIPT), f"http://127.0.0.1:{port}/"]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None, f"wrk did not finish within {timeout_s:.0f} s"
    except OSError as e:
        return None, f"cannot run wrk: {e}"
    line = next((l for l in result.stdout.splitlines() if l.startswith("wrk_result ")), None)
    if result.returncode != 0 or line is None:
        why = (result.stderr.strip().splitlines() or result.stdout.strip().splitlines() or ["?"])
        return None, f"wrk exit {result.returncode}: {why[-1][:200]}"
    values = {}
    for word in line.split()[1:]:
        key, _, value = word.partition("=")
        values[key] = float(value)
    return values, ""


def wrk_row(values: dict[str, float], port: int, connections: int) -> dict[str, str]:
    """wrk's numbers in the results CSV's columns; what wrk does not measure stays empty."""
    seconds = values["duration_us"] / 1e6
    errors = sum(values[k] for k in ("errors_connect", "errors_read", "errors_write",
                                      "errors_status", "timeouts"))

    def us(key: str) -> str:
        return f"{values[key]:.1f}"

    return {
        "label": "wrk", "protocol": "http", "host": "127.0.0.1", "port": str(port),
        "threads": "1", "connections": str(connections), "slow_clients": "0",
        "slow_mode": "", "payload_bytes": "0", "rate_rps": "0",
        "duration_s": f"{seconds:.3f}", "requests": f"{values['requests']:.0f}",
        "throughput_rps": f"{values['requests'] / seconds:.1f}",
        "throughput_bytes_s": f"{values['bytes'] / seconds:.1f}",
        "latency_min_us": us("latency_min_us"), "latency_mean_us": us("latency_mean_us"),
        "latency_p50_us": us("latency_p50_us"), "latency_p90_us": us("latency_p90_us"),
        "latency_p99_us": us("latency_p99_us"), "latency_p999_us": us("latency_p999_us"),
        "latency_max_us": us("latency_max_us"),
        "errors": f"{errors:.0f}", "errors_connect": f"{values['errors_connect']:.0f}",
        "errors_read": f"{values['errors_read']:.0f}",
        "errors_write": f"{values['errors_write']:.0f}",
        "timeouts": f"{values['timeouts']:.0f}",
    }
