// A /chat relay whose timing and faults are known, for checking loadgen's fan-out
// accounting: on npm's ws (from the bench peer's node_modules), every message a member
// of a room sends is relayed to every member of that room, the sender included, in the
// order received, exactly --delay-ms after it arrived (measured on the monotonic clock,
// never early). Faults, each injected once, counting messages from 1 in arrival order:
//   --drop N       message N is not delivered to one member other than its sender
//   --duplicate N  message N is delivered twice to one member other than its sender
// Prints "listening on 127.0.0.1:PORT"; SIGTERM ends it with exit 0, after a line that
// says how many messages it received, dropped and duplicated.
// Usage: node ws_fault_relay.js WS_PEER_DIR [--port P] [--delay-ms D] [--drop N] [--duplicate N]
"use strict";

const path = require("path");

const args = process.argv.slice(2);
const WebSocket = require(path.join(args[0], "node_modules", "ws"));
const option = (name, fallback) => {
  const at = args.indexOf(name);
  return at < 0 ? fallback : Number(args[at + 1]);
};
const port = option("--port", 0);
const delayNs = BigInt(Math.round(option("--delay-ms", 0) * 1e6));
const dropAt = option("--drop", 0);
const duplicateAt = option("--duplicate", 0);

const rooms = new Map();  // room name -> Set of sockets, in join order
let received = 0;
let dropped = 0;
let duplicated = 0;
const pending = [];  // {due, from, data, members, number}, due in arrival order

// The first member of the room that is not the sender, or null.
function other(members, from) {
  for (const member of members) if (member !== from) return member;
  return null;
}

function relay(item) {
  const skip = item.number === dropAt ? other(item.members, item.from) : null;
  const twice = item.number === duplicateAt ? other(item.members, item.from) : null;
  for (const member of item.members) {
    if (member.readyState !== WebSocket.OPEN) continue;
    if (member === skip) { ++dropped; continue; }
    member.send(item.data, { binary: true });
    if (member === twice) { member.send(item.data, { binary: true }); ++duplicated; }
  }
}

let timer = null;
function pump() {
  timer = null;
  const now = process.hrtime.bigint();
  while (pending.length > 0 && pending[0].due <= now) relay(pending.shift());
  if (pending.length > 0) {
    const waitMs = Number((pending[0].due - now + 999999n) / 1000000n);
    timer = setTimeout(pump, waitMs);
  }
}

const server = new WebSocket.Server({ host: "127.0.0.1", port, maxPayload: 64 << 20 }, () => {
  console.log(`listening on 127.0.0.1:${server.address().port}`);
});
server.on("connection", (ws, request) => {
  const name = new URL(request.url, "http://x").searchParams.get("room") || "lobby";
  if (!rooms.has(name)) rooms.set(name, new Set());
  const members = rooms.get(name);
  members.add(ws);
  ws.on("close", () => members.delete(ws));
  ws.on("error", () => {});
  ws.on("message", (data) => {
    const item = { due: process.hrtime.bigint() + delayNs, from: ws, data,
                   members: [...members], number: ++received };
    if (delayNs === 0n) return relay(item);
    pending.push(item);
    if (timer === null) pump();
  });
});
process.on("SIGTERM", () => {
  console.log(`received=${received} dropped=${dropped} duplicated=${duplicated}`);
  process.exit(0);
});
