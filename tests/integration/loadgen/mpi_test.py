#!/usr/bin/env python3
"""loadgen under mpirun, against a real echo-server on loopback.

merge:   3 ranks with --per-rank: the merged row's counts are the sum of the ranks' rows,
         and its percentiles are those of one histogram holding every rank's samples
         (merged here, bucket by bucket, from each rank's own --buckets file), not an
         average of the ranks' percentiles; then the plain command (no --per-rank) prints
         one summary of 3 ranks.
namespaces: tests/netns/mpi-hosts with 2 load ranks in namespaces of their own and the
         server in a third: one merged row of 2 hosts, the sum of theirs, and nothing
         left behind (needs root; skipped with its reason where namespaces are not
         allowed).
failure: a rank that stops answering ends the run within --rank-timeout, named with its
         host, and a non-zero exit; a check only rank 0 makes (--csv into a missing
         folder) is reported once, naming rank 0.

Exit 77 (CTest: skipped) with the reason when loadgen was built without Open MPI or
mpirun is missing. Usage: mpi_test.py merge|failure|namespaces LOADGEN ECHO_SERVER
"""
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SKIP = 77
# Open MPI refuses to run as root unless told; the tests run as whoever runs CTest.
# Open MPI does not free all it allocates by MPI_Finalize (in libmpi and its dlopen'ed
# components, no frame of ours), which LeakSanitizer would report from every rank of a
# sanitizer build: leak checking is off for the ranks only (a loadgen run without
# mpirun is checked by the other tests).
MPI_ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_btl_base_warn_component_unused="0",
               ASAN_OPTIONS=":".join(filter(None, [os.environ.get("ASAN_OPTIONS"),
                                                   "detect_leaks=0"])),
               # Likewise ThreadSanitizer reports lock-order cycles inside Open MPI's TCP
               # transport (no frame of ours); loadgen's threads are checked elsewhere.
               TSAN_OPTIONS=":".join(filter(None, [os.environ.get("TSAN_OPTIONS"),
                                                   "report_bugs=0"])))


def skip_unless_mpi(loadgen):
    version = subprocess.run([loadgen, "--version"], capture_output=True, text=True).stdout
    if "Open MPI" not in version:
        print(f"SKIPPED: loadgen was built without Open MPI ({version.strip()})")
        sys.exit(SKIP)
    if shutil.which("mpirun") is None:
        print("SKIPPED: no mpirun on PATH (Debian: openmpi-bin)")
        sys.exit(SKIP)


class EchoServer:
    def __init__(self, binary):
        self.process = subprocess.Popen([binary, "--model", "epoll", "--port", "0"],
                                        stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if not line.startswith("listening on "):
            raise SystemExit(f"echo-server did not start: {line!r}")
        self.port = int(line.split()[2].rsplit(":", 1)[1])

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=10)


def mpirun(np, args, timeout=60, extra=()):
    command = ["mpirun", "--oversubscribe", "-np", str(np), *extra, *args]
    started = time.monotonic()
    run = subprocess.run(command, capture_output=True, text=True, env=MPI_ENV, timeout=timeout)
    run.seconds = time.monotonic() - started
    run.command = " ".join(command)
    return run


def check(condition, message, run=None):
    if not condition:
        detail = "" if run is None else (
            f"\n$ {run.command}\nexit {run.returncode}\nstdout:\n{run.stdout}\nstderr:\n{run.stderr}")
        raise SystemExit("FAILED: " + message + detail)


def read_buckets(path):
    """A --buckets file: (count, min, max) and {(lowest, highest): count}."""
    with open(path) as f:
        head = f.readline().split()
        assert head[0] == "#", head
        count, low, high = (int(x) for x in head[1:4])
        assert f.readline().strip() == "lowest_ns,highest_ns,count"
        buckets = {}
        for line in f:
            lowest, highest, n = (int(x) for x in line.split(","))
            buckets[(lowest, highest)] = n
    return count, low, high, buckets


def percentile(count, low, high, buckets, p):
    """The histogram's rule (loadgen/histogram.hpp): the sample of rank ceil(p/100 * n),
    read as its bucket's highest value capped at the maximum; the first and last exact."""
    x = p / 100.0 * count
    x -= x * 1e-11
    rank = max(1, min(count, math.ceil(x)))
    if rank <= 1:
        return low
    if rank >= count:
        return high
    seen = 0
    for (lowest, highest), n in sorted(buckets.items()):
        seen += n
        if seen >= rank:
            return min(highest, high)
    raise AssertionError("counts do not add up")


def test_merge(loadgen, echo_server):
    server = EchoServer(echo_server)
    work = tempfile.mkdtemp(prefix="mpi-merge-")
    try:
        buckets = os.path.join(work, "b")
        run = mpirun(3, [loadgen, "--port", str(server.port), "--connections", "30",
                         "--duration", "2s", "--per-rank", "--json", "--buckets", buckets])
        check(run.returncode == 0, "the 3-rank run failed", run)
        rows = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
        check(len(rows) == 4, "expected 3 rank rows and the merged one", run)
        ranks, merged = rows[:3], rows[3]
        check([r["rank"] for r in ranks] == [0, 1, 2], "rank rows in rank order", run)
        check(merged["rank"] is None and merged["ranks"] == 3 and merged["hosts"] == 1,
              "the merged row: 3 ranks on 1 host", run)
        check([r["connections"] for r in ranks] == [10, 10, 10] and merged["connections"] == 30,
              "30 connections split 10, 10, 10", run)
        check(merged["requests"] > 0, "the merged row has requests", run)
        for column in ("requests", "errors", "timeouts", "reconnects", "starved_connections"):
            check(merged[column] == sum(r[column] for r in ranks),
                  f"merged {column} {merged[column]} is the sum of the ranks' "
                  f"{[r[column] for r in ranks]}", run)
        check(merged["errors"] == 0, "no errors against a real echo server", run)
        check(merged["start_skew_us"] is not None and merged["start_skew_us"] >= 0,
              "the merged row reports the ranks' start skew", run)

        # One histogram of every sample, merged here from each rank's own file.
        union = {}
        total, low, high = 0, None, 0
        for r in range(3):
            count, rlow, rhigh, rb = read_buckets(f"{buckets}.rank{r}")
            check(count == ranks[r]["requests"], f"rank {r}'s histogram holds its requests")
            total += count
            low = rlow if low is None else min(low, rlow)
            high = max(high, rhigh)
            for key, n in rb.items():
                union[key] = union.get(key, 0) + n
        mcount, mlow, mhigh, mbuckets = read_buckets(buckets)
        check((mcount, mlow, mhigh) == (total, low, high) and mbuckets == union,
              "rank 0's merged histogram is the bucket-by-bucket sum of the ranks'")
        for p, column in ((50, "latency_p50_us"), (90, "latency_p90_us"), (99, "latency_p99_us"),
                          (99.9, "latency_p999_us")):
            expected = percentile(total, low, high, union, p) / 1000.0
            check(abs(merged[column] - expected) < 5e-4,
                  f"merged {column} {merged[column]} is p{p} of all samples, {expected}", run)
        average = sum(r["latency_p99_us"] for r in ranks) / 3
        print(f"p99 of every sample {merged['latency_p99_us']} µs; ranks' p99 "
              f"{[r['latency_p99_us'] for r in ranks]} (their average {average:.3f})")
        check(merged["latency_max_us"] == max(r["latency_max_us"] for r in ranks), "max of maxima")

        # The command, as a user types it: one summary, of 3 ranks.
        plain = mpirun(3, [loadgen, "--port", str(server.port), "--connections", "30",
                           "--duration", "2s"])
        check(plain.returncode == 0, "the plain 3-rank run failed", plain)
        check(plain.stdout.count("Throughput\n") == 1, "one summary, printed by rank 0", plain)
        check("3 loadgen processes on 1 host" in plain.stdout, "the summary names the ranks", plain)
        check("fast clients  30 on 3 threads" in plain.stdout, "30 clients over 3 loops", plain)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print("ok")


def rank_pid(mpirun_pid, rank):
    """The pid of the loadgen of `rank` started under mpirun_pid (found through /proc)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv0 = f.read().split(b"\0")[0]
        except OSError:
            continue
        if argv0.endswith(b"loadgen") and f"OMPI_COMM_WORLD_RANK={rank}".encode() in env:
            pid, ancestor = int(entry), int(entry)
            while ancestor > 1:
                if ancestor == mpirun_pid:
                    return pid
                try:
                    with open(f"/proc/{ancestor}/stat") as f:
                        ancestor = int(f.read().rsplit(")", 1)[1].split()[1])
                except OSError:
                    break
    return None


def test_failure(loadgen, echo_server):
    server = EchoServer(echo_server)
    try:
        # Rank 1 is stopped mid-run: rank 0 waits --rank-timeout for its results, then
        # ends the run naming it.
        command = ["mpirun", "--oversubscribe", "-np", "2", loadgen, "--port", str(server.port),
                   "--connections", "4", "--duration", "3s", "--rank-timeout", "2s"]
        started = time.monotonic()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=MPI_ENV)
        victim = None
        while victim is None and time.monotonic() - started < 20:
            victim = rank_pid(process.pid, 1)
            time.sleep(0.1)
        check(victim is not None, "rank 1's loadgen was not found")
        time.sleep(1.0)
        os.kill(victim, signal.SIGSTOP)
        try:
            out, err = process.communicate(timeout=60)
        finally:
            try:
                os.kill(victim, signal.SIGCONT)
            except ProcessLookupError:
                pass
        seconds = time.monotonic() - started
        process.command = " ".join(command)
        process.stdout, process.stderr = out, err
        check(process.returncode != 0, "a stopped rank makes the run fail", process)
        check("rank(s) 1 on " in err and "--rank-timeout" in err,
              "rank 0 names the rank it waited for, with its host", process)
        check(seconds < 40, f"the run ended in {seconds:.1f} s, not hanging", process)
        check(rank_pid(process.pid, 1) is None, "no rank left behind")

        # A check only rank 0 makes fails: one line naming rank 0, exit 2.
        run = mpirun(2, [loadgen, "--port", str(server.port), "--duration", "1s",
                         "--csv", "/nonexistent-folder/out.csv"])
        lines = [l for l in run.stderr.splitlines() if l.startswith("loadgen:")]
        check(run.returncode != 0, "a failed check fails the run", run)
        check(len(lines) == 1 and "rank 0 on " in lines[0] and "--csv" in lines[0],
              "one line, naming rank 0 and the flag", run)
        check(run.seconds < 30, "and promptly", run)
    finally:
        server.stop()
    print("ok")


def netns_names():
    run = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    return sorted(line.split()[0] for line in run.stdout.splitlines() if line.strip())


def bridges():
    run = subprocess.run(["ip", "-o", "link", "show", "type", "bridge"], capture_output=True,
                         text=True)
    return sorted(line.split(":")[1].strip() for line in run.stdout.splitlines())


def test_namespaces(loadgen, echo_server):
    script = os.path.join(os.path.dirname(__file__), "..", "..", "netns", "mpi-hosts")
    build = os.path.dirname(loadgen)
    if os.path.dirname(echo_server) != build:
        raise SystemExit("loadgen and echo-server are expected side by side")
    before = (netns_names(), bridges()) if shutil.which("ip") else None
    command = [script, "--build", build, "--ranks", "2", "--", "--connections", "8",
               "--duration", "2s", "--per-rank", "--json"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120, env=MPI_ENV)
    run.command = " ".join(command)
    if run.returncode == SKIP:
        print(run.stderr.strip().replace("mpi-hosts: SKIPPED", "SKIPPED"))
        sys.exit(SKIP)
    check(run.returncode == 0, "the namespace run failed", run)
    rows = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    check(len(rows) == 3, "two rank rows and the merged one", run)
    ranks, merged = rows[:2], rows[2]
    check(merged["ranks"] == 2 and merged["hosts"] == 2,
          "2 ranks on 2 hosts (one namespace each)", run)
    check(merged["host"] == "10.213.0.1", "the target is the server's namespace", run)
    check(all(r["requests"] > 0 for r in ranks), "both namespaces sent load", run)
    check(merged["requests"] == sum(r["requests"] for r in ranks),
          "the merged requests are the sum of the two namespaces'", run)
    check(merged["errors"] == 0, "no errors", run)
    check((netns_names(), bridges()) == before,
          "every namespace and bridge the script made is gone", run)
    print(run.stderr.strip())
    print(f"merged: {merged['requests']} requests from {[r['requests'] for r in ranks]}, "
          f"p99 {merged['latency_p99_us']} µs, start skew {merged['start_skew_us']} µs")
    print("ok")


def main():
    cases = {"merge": test_merge, "failure": test_failure, "namespaces": test_namespaces}
    if len(sys.argv) != 4 or sys.argv[1] not in cases:
        raise SystemExit(__doc__)
    loadgen, echo_server = sys.argv[2], sys.argv[3]
    skip_unless_mpi(loadgen)
    cases[sys.argv[1]](loadgen, echo_server)


if __name__ == "__main__":
    main()
