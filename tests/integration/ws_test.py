#!/usr/bin/env python3
"""echo-server --protocol ws against a real client, for every model that serves ws (as
--list-models says): the handshake, echo of text and binary up to --max-message and
1009 past it, fragments, ping, the close handshake, 1002 for an unmasked frame, 400 for
a bad handshake, the chat page at /, and /chat as the model's rooms trait says: rooms
relay every message to every member, each sender's in order (and all in one order but
across loops or processes), and evict a member that never reads past --max-backlog
with 1008 while the others keep receiving; a room of one hands each message back to
its sender. A model the kernel refuses (io_uring where it is disabled) is skipped
with the server's own line as the reason. The client is a minimal RFC 6455 client on
the standard library.
Usage: ws_test.py PATH_TO_ECHO_SERVER [SUITE]"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest

SERVER = ""  # set from argv


def list_models() -> dict[str, tuple[list[str], list[str]]]:
    """{model: (protocols, traits)} from echo-server --list-models."""
    out = subprocess.run([SERVER, "--list-models"], capture_output=True, text=True,
                         check=True, timeout=10).stdout
    models = {}
    for line in out.splitlines()[1:]:
        words = line.split()
        models[words[0]] = (words[1].split(","), words[2].split(","))
    return models


class Server:
    """echo-server on a kernel-picked loopback port; stop() returns its summary line."""

    def __init__(self, model: str, *args: str):
        self.proc = subprocess.Popen([SERVER, "--model", model, "--protocol", "ws",
                                      "--port", "0", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        match = re.match(r"listening on 127\.0\.0\.1:(\d+) ", line)
        if not match:
            self.proc.kill()
            err = self.proc.stderr.read()
            if self.proc.wait() == 2 and "not available on this kernel" in err:
                raise unittest.SkipTest(err.strip())
            raise RuntimeError(f"{model}: no listening line: {line!r} {err}")
        self.port = int(match.group(1))

    def stop(self) -> str:
        """Stops the server; its summary line. A server that does not exit 0 with nothing
        on stderr (a sanitizer's report, say) fails the test."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise
        if self.proc.returncode != 0 or err:
            raise AssertionError(f"exit {self.proc.returncode}: {err}")
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.stop()


def http_get(port: int, request: bytes) -> bytes:
    """Sends a raw request and returns everything until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data


def frame(opcode: int, payload: bytes, fin: bool = True, masked: bool = True) -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    bit = 0x80 if masked else 0
    if len(payload) < 126:
        head += bytes([bit | len(payload)])
    elif len(payload) <= 0xFFFF:
        head += bytes([bit | 126]) + struct.pack(">H", len(payload))
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", len(payload))
    if not masked:
        return head + payload
    mask = os.urandom(4)
    repeated = (mask * (len(payload) // 4 + 1))[:len(payload)]
    masked_payload = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
                      ).to_bytes(len(payload), "big") if payload else b""
    return head + mask + masked_payload


class Client:
    """A minimal WebSocket client: handshake, masked frames out, whole frames in."""

    def __init__(self, port: int, path: str, rcvbuf: int | None = None):
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed during the handshake: {self.buffer!r}")
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        self.head = head.decode()
        expected = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        if not self.head.startswith("HTTP/1.1 101 ") or \
                f"Sec-WebSocket-Accept: {expected}" not in self.head:
            raise ConnectionError(f"handshake refused: {self.head}")

    def send(self, opcode: int, payload: bytes, **kwargs) -> None:
        self.sock.sendall(frame(opcode, payload, **kwargs))

    def _need(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def recv(self) -> tuple[int, bytes]:
        """The next frame: (opcode, payload)."""
        b0, b1 = self._need(2)
        assert b1 & 0x80 == 0, "a server frame is never masked"
        size = b1 & 0x7F
        if size == 126:
            size = struct.unpack(">H", self._need(2))[0]
        elif size == 127:
            size = struct.unpack(">Q", self._need(8))[0]
        return b0 & 0x0F, self._need(size)

    def close_code(self) -> int:
        """Reads up to the server's close frame and returns its status code."""
        while True:
            opcode, payload = self.recv()
            if opcode == 8:
                return struct.unpack(">H", payload[:2])[0]

    def close(self) -> None:
        self.sock.close()


MODELS: dict[str, tuple[list[str], list[str]]] = {}


def ws_models() -> list[str]:
    return [m for m, (protocols, _) in MODELS.items() if "ws" in protocols]


def variants() -> list[tuple[str, list[str]]]:
    """Every model serving ws, epoll once more level-triggered, reactors and prefork once
    more with three loops, a socket each."""
    found = [(m, []) for m in ws_models()]
    if "epoll" in ws_models():
        found.append(("epoll", ["--epoll-level"]))
    if "reactors" in ws_models():
        # Connections spread over three loops by the kernel, so rooms span loops.
        found.append(("reactors", ["--workers", "3", "--accept", "reuseport"]))
    if "prefork" in ws_models():
        found.append(("prefork", ["--workers", "3", "--accept", "reuseport"]))
    return found


LIMIT = 256 * 1024  # --max-message in these tests


class WsEcho(unittest.TestCase):
    def test_every_model_speaks_rfc6455(self):
        self.assertIn("epoll", ws_models())
        for model, flags in variants():
            with self.subTest(model=model, flags=flags), \
                    Server(model, "--max-message", str(LIMIT), *flags) as server:
                self.check_echo(server.port)
                self.check_http(server.port)
                summary = server.stop()
                self.assertRegex(summary, r" messages=\d+ evicted=0 dropped=0")

    def check_echo(self, port: int) -> None:
        client = Client(port, "/echo")
        client.send(1, "héllo".encode())
        self.assertEqual(client.recv(), (1, "héllo".encode()))
        for size in (0, 125, 126, 65536, LIMIT):
            payload = os.urandom(size)
            client.send(2, payload)
            self.assertEqual(client.recv(), (2, payload), f"{size} bytes")
        # Fragments, with a ping between them answered at once.
        client.send(1, b"frag", fin=False)
        client.send(9, b"ping!")
        client.send(0, b"men", fin=False)
        client.send(0, b"ted")
        self.assertEqual(client.recv(), (10, b"ping!"))
        self.assertEqual(client.recv(), (1, b"fragmented"))
        client.send(8, struct.pack(">H", 1000) + b"done")
        self.assertEqual(client.close_code(), 1000)
        self.assertEqual(client.sock.recv(1), b"")  # then the server closes
        client.close()

        too_big = Client(port, "/echo")
        too_big.send(2, b"x" * (LIMIT + 1))
        self.assertEqual(too_big.close_code(), 1009)
        too_big.close()

        unmasked = Client(port, "/echo")
        unmasked.send(1, b"no mask", masked=False)
        self.assertEqual(unmasked.close_code(), 1002)
        unmasked.close()

    def check_http(self, port: int) -> None:
        page = http_get(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(page.startswith(b"HTTP/1.1 200 OK\r\n"), page[:80])
        self.assertIn(b"/chat?room=", page)
        bad = http_get(port, b"GET /echo HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                             b"Sec-WebSocket-Key: nope\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.assertTrue(bad.startswith(b"HTTP/1.1 400 "), bad[:80])
        self.assertTrue(http_get(port, b"GET /other HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 404 "))


class Reader(threading.Thread):
    """Reads `count` text frames from a client into `got`, then stops."""

    def __init__(self, client: Client, count: int):
        super().__init__(daemon=True)
        self.client, self.count, self.got, self.error = client, count, [], None

    def run(self):
        try:
            while len(self.got) < self.count:
                opcode, payload = self.client.recv()
                if opcode == 1:
                    self.got.append(payload)
        except Exception as e:  # reported by the test
            self.error = e


class WsChat(unittest.TestCase):
    def test_rooms_relay_to_every_member_in_order_and_evict_a_reader_that_stops(self):
        models = [(m, f) for m, f in variants()
                  if {"loop-rooms", "shared-rooms", "hub-rooms"} & set(MODELS[m][1])]
        self.assertTrue(models)
        for model, flags in models:
            # A hub between loops keeps each sender's order, not one order for all.
            total_order = "hub-rooms" not in MODELS[model][1]
            with self.subTest(model=model, flags=flags), \
                    Server(model, "--max-backlog", "256KiB", *flags) as server:
                self.check_room(server, total_order)

    def check_room(self, server: Server, total_order: bool) -> None:
        members = [Client(server.port, "/chat?room=r") for _ in range(3)]
        # A member that reads and never sends: no read of its own ever asks the server
        # to write to it, so it gets the room's messages only if the model sends them
        # unasked.
        listener = Client(server.port, "/chat?room=r")
        outsider = Client(server.port, "/chat?room=other")
        idle = Client(server.port, "/chat?room=r", rcvbuf=4096)
        # 6.7 MB: past the idle member's backlog and its socket buffers, which the kernel
        # grows up to 4 MiB (net.ipv4.tcp_wmem) even for a peer that never reads.
        count = 420
        readers = [Reader(member, count) for member in members + [listener]]
        for reader in readers:
            reader.start()
        start = time.monotonic()
        for i in range(count):
            members[i % 3].send(1, f"{i % 3}:{i // 3:05d}:".encode() + b"." * 16_000)
            # The readers keep up (a window of 128 KB, under the backlog); the idle
            # member falls behind by all of it.
            if i % 8 == 7:
                deadline = time.monotonic() + 10
                while min(len(r.got) for r in readers) <= i and time.monotonic() < deadline:
                    time.sleep(0.001)
        for reader in readers:
            reader.join(timeout=20)
            self.assertIsNone(reader.error)
            self.assertEqual(len(reader.got), count)
            # Each sender's messages in the order it sent them, and one order for all.
            for sender in range(3):
                mine = [m[:7] for m in reader.got if m.startswith(f"{sender}:".encode())]
                self.assertEqual(mine, [f"{sender}:{n:05d}".encode() for n in range(len(mine))])
            if total_order:
                self.assertEqual(reader.got, readers[0].got, "one total order")
        self.assertLess(time.monotonic() - start, 20)
        # The idle member was evicted: what it is owed ends with a close, 1008.
        self.assertEqual(idle.close_code(), 1008)
        # The outsider got nothing: a ping is answered first.
        outsider.send(9, b"?")
        self.assertEqual(outsider.recv(), (10, b"?"))
        for client in members + [listener, outsider, idle]:
            client.close()
        self.assertIn(" evicted=1", server.stop())

    def test_a_room_of_one_hands_each_message_back(self):
        for model in (m for m in ws_models() if "solo-rooms" in MODELS[m][1]):
            with self.subTest(model=model), Server(model) as server:
                client = Client(server.port, "/chat?room=r")
                for i in range(5):
                    client.send(1, f"m{i}".encode())
                self.assertEqual([client.recv() for _ in range(5)],
                                 [(1, f"m{i}".encode()) for i in range(5)])
                client.close()


if __name__ == "__main__":
    SERVER = sys.argv.pop(1)
    MODELS = list_models()
    unittest.main()
