"""A cgroup of its own for each server the bench starts, so that loadgen
(--server-cgroup) reads what the server cost from the kernel's counters at the window's
edges (CPU time, memory peak, task peak) instead of walking /proc during the window.
cgroup v1 (the cpuacct, memory and pids hierarchies) or v2 (the unified one); needs
root. Every cgroup made here is removed when its server is gone. Standard library only."""

from __future__ import annotations

import os
import time
from pathlib import Path

PARENT = "cb-bench"
V1_CONTROLLERS = ("cpuacct", "memory", "pids")


def mounts() -> dict[str, Path]:
    """Mount point per v1 controller name, and '' for the v2 hierarchy."""
    found: dict[str, Path] = {}
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        fields = line.split()
        if len(fields) < 4:
            continue
        if fields[2] == "cgroup2":
            found.setdefault("", Path(fields[1]))
        elif fields[2] == "cgroup":
            for option in fields[3].split(","):
                found.setdefault(option, Path(fields[1]))
    return found


class Cgroup:
    """One server's cgroup: made by create(), joined by the command wrap() returns,
    removed by remove() once its processes are gone."""

    def __init__(self, dirs: list[Path]):
        self.dirs = dirs

    @staticmethod
    def create(name: str) -> tuple["Cgroup | None", str]:
        """A new cgroup named `name` under cb-bench/ in every hierarchy needed, or
        (None, why not)."""
        points = mounts()
        if all(c in points for c in V1_CONTROLLERS):
            parents = [points[c] / PARENT for c in V1_CONTROLLERS]
        elif "" in points:
            root = points[""]
            parents = [root / PARENT]
            # v2 counts memory and tasks only where the parent hands those controllers down.
            for folder in (root, root / PARENT):
                try:
                    folder.mkdir(exist_ok=True)
                    (folder / "cgroup.subtree_control").write_text("+memory +pids")
                except OSError:
                    pass
        else:
            return None, "no cgroup hierarchy with CPU accounting is mounted"
        dirs = []
        try:
            for parent in parents:
                parent.mkdir(exist_ok=True)
                folder = parent / name
                folder.mkdir()
                dirs.append(folder)
        except OSError as e:
            Cgroup(dirs).remove()
            return None, f"cannot make a cgroup ({e.strerror}; the bench needs root for this)"
        return Cgroup(dirs), ""

    def wrap(self, cmd: list[str]) -> list[str]:
        """cmd, started as a shell that first moves itself into the cgroup and then execs
        cmd: the server is in it before it makes any thread or child, with the same pid."""
        joins = " && ".join(f"echo $$ > '{d}/cgroup.procs'" for d in self.dirs)
        return ["sh", "-c", f'{joins} && exec "$0" "$@"'] + cmd

    def remove(self, wait_s: float = 5) -> bool:
        """Removes the cgroup once its last process is gone (waiting up to wait_s)."""
        deadline = time.monotonic() + wait_s
        for folder in self.dirs:
            while folder.exists():
                try:
                    folder.rmdir()
                except OSError:
                    if time.monotonic() > deadline:
                        return False
                    time.sleep(0.05)
        return True


def unique_name(label: str) -> str:
    return f"{label}-{os.getpid()}-{time.monotonic_ns()}"


def probe() -> str:
    """"" when this machine lets the bench give servers cgroups, else why not."""
    group, problem = Cgroup.create(unique_name("probe"))
    if group:
        group.remove()
    return problem


def remove_parents() -> None:
    """Removes the cb-bench folders once no cgroup is left in them (another bench run's
    still there keeps them, and that is no error)."""
    points = mounts()
    for point in {points.get(c) for c in V1_CONTROLLERS} | {points.get("")}:
        if point is None:
            continue
        try:
            (point / PARENT).rmdir()
        except OSError:
            pass
