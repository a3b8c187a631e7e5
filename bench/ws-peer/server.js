#!/usr/bin/env node
// The bench's reference WebSocket peer, on Node.js with npm's ws: /echo returns each
// message to its sender; /chat?room=NAME relays every message to every member of its
// room, the sender included, in the order received (one event loop: one total order).
// What one turn of the event loop relays to a member leaves in one write: its socket is
// corked at the turn's first message for it and uncorked by setImmediate, after the
// turn's reads, as echo-server's loops do; a write per message per member cost this
// peer 4x to 30x of its deliveries/s (measured with the chat scenario).
// A member whose unsent output passes --max-backlog is closed with 1008 and dropped from
// its room at once, so that it neither holds memory without bound nor delays the others.
//
//   node server.js [--host 127.0.0.1] [--port 0] [--max-backlog 1MiB] [--max-message 1MiB]
//
// Prints "listening on HOST:PORT model=node-ws" when ready; SIGTERM or SIGINT closes
// everything and prints "closed N members past the backlog" before exiting 0.
'use strict';

const http = require('http');
const { WebSocketServer } = require('ws');

const USAGE = 'usage: node server.js [--host ADDR] [--port N] [--max-backlog BYTES] [--max-message BYTES]';

function usage_error(message) {
  process.stderr.write(`ws-peer: ${message}\n${USAGE}\n`);
  process.exit(2);
}

function parse_bytes(flag, text) {
  const match = /^(\d+)(|b|k|KiB|m|MiB)$/.exec(text || '');
  if (!match) usage_error(`${flag}: '${text}' is not a size (e.g. 65536, 64k, 1MiB)`);
  const unit = { '': 1, b: 1, k: 1024, KiB: 1024, m: 1 << 20, MiB: 1 << 20 }[match[2]];
  const value = Number(match[1]) * unit;
  if (value < 1 || value > (1 << 30)) usage_error(`${flag}: '${text}' is outside 1 B to 1 GiB`);
  return value;
}

function parse_args(argv) {
  const options = { host: '127.0.0.1', port: 0, maxBacklog: 1 << 20, maxMessage: 1 << 20 };
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i];
    const value = argv[i + 1];
    if (flag === '--help' || flag === '-h') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    }
    if (value === undefined) usage_error(`${flag}: needs a value`);
    if (flag === '--host') {
      options.host = value;
    } else if (flag === '--port') {
      if (!/^\d+$/.test(value) || Number(value) > 65535) usage_error(`--port: '${value}' is not 0-65535`);
      options.port = Number(value);
    } else if (flag === '--max-backlog') {
      options.maxBacklog = parse_bytes(flag, value);
    } else if (flag === '--max-message') {
      options.maxMessage = parse_bytes(flag, value);
    } else {
      usage_error(`unknown flag '${flag}'`);
    }
  }
  return options;
}

const options = parse_args(process.argv.slice(2));
const rooms = new Map();  // name -> Set of sockets
let closedPastBacklog = 0;

// After its close frame is queued a member past the backlog gets this long to take it
// before its connection is cut: it reads nothing, so the frame may never reach it.
const CLOSE_GRACE_MS = 1000;

// Cuts a member with a reset: a plain close would queue its FIN behind the bytes the
// member never read, so the member (and its kernel) would not learn of it for minutes.
function cut(member) {
  const socket = member._socket;  // ws keeps the net.Socket here
  if (socket && typeof socket.resetAndDestroy === 'function') {
    socket.resetAndDestroy();
  } else {
    member.terminate();
  }
}

function close_past_backlog(member) {
  closedPastBacklog += 1;
  member.close(1008, 'backlog limit');
  setTimeout(() => cut(member), CLOSE_GRACE_MS).unref();
}

function drop_past_backlog(member, room) {
  room.delete(member);
  close_past_backlog(member);
}

// Members given a message in this turn of the event loop, corked: what a turn relays to
// a member leaves in one write when setImmediate uncorks them, after the turn's reads,
// rather than one write per message per member.
const corked = new Set();

function uncork_all() {
  for (const socket of corked) socket.uncork();
  corked.clear();
}

function send_batched(member, data, isBinary) {
  const socket = member._socket;  // ws keeps the net.Socket here
  if (socket && !corked.has(socket)) {
    if (corked.size === 0) setImmediate(uncork_all);
    socket.cork();
    corked.add(socket);
  }
  member.send(data, { binary: isBinary });
}

function join_chat(socket, name) {
  let room = rooms.get(name);
  if (!room) {
    room = new Set();
    rooms.set(name, room);
  }
  room.add(socket);
  socket.on('message', (data, isBinary) => {
    for (const member of room) {
      if (member.readyState !== member.OPEN) continue;
      if (member.bufferedAmount > options.maxBacklog) {
        drop_past_backlog(member, room);
        continue;
      }
      send_batched(member, data, isBinary);
    }
  });
  socket.on('close', () => {
    room.delete(socket);
    if (room.size === 0) rooms.delete(name);
  });
}

function serve_echo(socket) {
  socket.on('message', (data, isBinary) => {
    if (socket.bufferedAmount > options.maxBacklog) {
      close_past_backlog(socket);
      return;
    }
    socket.send(data, { binary: isBinary });
  });
}

const wss = new WebSocketServer({ noServer: true, maxPayload: options.maxMessage });
const server = http.createServer((request, response) => {
  response.writeHead(426, { 'Content-Type': 'text/plain', Upgrade: 'websocket' });
  response.end('this peer speaks WebSocket only: /echo and /chat?room=NAME\n');
});

server.on('upgrade', (request, socket, head) => {
  const url = new URL(request.url, 'http://peer');
  let serve = null;
  if (url.pathname === '/echo') {
    serve = serve_echo;
  } else if (url.pathname === '/chat') {
    const name = url.searchParams.get('room') || 'lobby';
    serve = (ws) => join_chat(ws, name);
  }
  if (!serve) {
    socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    return;
  }
  wss.handleUpgrade(request, socket, head, (ws) => {
    ws.on('error', () => {});  // a reset member is a close like any other
    serve(ws);
  });
});
server.on('error', (error) => {
  process.stderr.write(`ws-peer: ${error.message}\n`);
  process.exit(1);
});

server.listen(options.port, options.host, () => {
  const address = server.address();
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  process.stdout.write(`listening on ${host}:${address.port} model=node-ws\n`);
});

function shut_down() {
  process.stdout.write(`closed ${closedPastBacklog} members past the backlog\n`);
  for (const client of wss.clients) client.terminate();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shut_down);
process.on('SIGINT', shut_down);
