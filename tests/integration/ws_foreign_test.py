#!/usr/bin/env python3
"""A foreign client against every model that serves ws (as --list-models says, with the
same variants as ws_test.py): ws_foreign_client.js, on Node with npm's `ws` from the
bench's peer (bench/ws-peer/node_modules), checks the handshake, echo up to
--max-message and 1009 past it, fragments, ping, close 1000, 1002 for an unmasked
frame, 400 and 426 for bad handshakes, and (in models whose rooms relay between
connections) a room of three. Each server is started on port 0 and stopped with SIGTERM,
and must exit 0 with nothing on stderr. Exits 77 (skipped) when node or the ws package
is missing (tools/setup installs both).
Usage: ws_foreign_test.py PATH_TO_ECHO_SERVER"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ws_test  # noqa: E402  (its server launcher and model list)

HERE = os.path.dirname(os.path.abspath(__file__))
PEER_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "bench", "ws-peer"))
CLIENT = os.path.join(HERE, "ws_foreign_client.js")
LIMIT = ws_test.LIMIT
RELAYING = {"loop-rooms", "shared-rooms", "hub-rooms"}


def main() -> int:
    ws_test.SERVER = sys.argv[1]
    node = shutil.which("node")
    if node is None:
        print("SKIP: node is not installed (tools/setup installs nodejs)")
        return 77
    if not os.path.exists(os.path.join(PEER_DIR, "node_modules", "ws", "package.json")):
        print(f"SKIP: npm's ws is not installed in {PEER_DIR} (tools/setup runs npm ci there)")
        return 77
    ws_test.MODELS = ws_test.list_models()
    variants = ws_test.variants()
    if not any(model == "epoll" for model, _ in variants):
        print("FAIL: epoll does not serve ws", file=sys.stderr)
        return 1
    failed = []
    for model, flags in variants:
        mode = "chat" if RELAYING & set(ws_test.MODELS[model][1]) else "echo"
        name = " ".join([model, *flags])
        try:
            with ws_test.Server(model, "--max-message", str(LIMIT), *flags) as server:
                run = subprocess.run([node, CLIENT, PEER_DIR, str(server.port), str(LIMIT), mode],
                                     capture_output=True, text=True, timeout=60)
                server.stop()
        except (AssertionError, RuntimeError, subprocess.TimeoutExpired) as error:
            failed.append(name)
            print(f"FAIL {name}: {error}", file=sys.stderr)
            continue
        if run.returncode != 0:
            failed.append(name)
            print(f"FAIL {name} ({mode}): {run.stderr.strip()}", file=sys.stderr)
        else:
            print(f"ok   {name} ({mode})")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
