#!/usr/bin/env python3
"""The bench driver behind bench/run: runs every server model under the same loads,
one case at a time (server pinned to one CPU, loadgen to another), and writes
results.csv, machine.txt, summary.txt, plots and index.html into one run folder. The
http scenario instead puts our HTTP server and loadgen beside nginx and wrk; the chat
scenario puts our ws servers beside a Node.js one.

Standard library only; every number in its output comes from loadgen, bench/floor
or /proc in this run. This file is only the entry point; the parts, one concern each:
  cli.py            the command line: options, checks, main()
  scenarios.py      the scenario table, its durations, what --list says
  cases.py          Bench (one case of each kind), the whole run, the matrix loop and table
  servers.py        the build's programs, echo-server in a cgroup (Server), /proc readings
  results.py        results.csv's rows
  machine.py        machine.txt, the git revision, bench/floor's calibration
  targets.py        the performance targets
  http_scenario.py  nginx and wrk beside our server and loadgen (with peers.py)
  chat_scenario.py  loadgen's fan-out workload against the Node ws peer (ws-peer/) and
                    every model with a ws form
  latency.py, generator.py   the scenarios with loops of their own
  accept_modes.py   the accept scenario's cases, server columns and summary table
  cgroups.py, report.py      a cgroup per server; the run folder's index.html"""

import sys

from cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
