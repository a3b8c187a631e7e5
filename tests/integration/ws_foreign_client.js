// A foreign WebSocket client against one running echo-server --protocol ws: npm's `ws`
// (the library most Node servers and clients use), not the project's own framing code.
// Checks, one connection at a time (so that a model serving one connection at a time
// passes too): the handshake; echo of text and binary messages up to LIMIT bytes, and
// close 1009 one byte past it; close 1007 for text that is not UTF-8; a fragmented
// message (ws's send with fin: false) comes back whole; a ping gets its pong; a normal close gets 1000 back; an unmasked frame
// written raw after a handshake gets 1002; a missing Sec-WebSocket-Key gets 400 and a
// Sec-WebSocket-Version other than 13 gets 426. With "chat": three members of one
// /chat room each send messages and every member receives every message, each
// sender's in the order sent.
// Usage: node ws_foreign_client.js WS_PEER_DIR PORT LIMIT echo|chat
// Exits 0 when every check passed, 1 with the failed check on stderr.
"use strict";

const crypto = require("crypto");
const net = require("net");
const path = require("path");

const [peerDir, portText, limitText, mode] = process.argv.slice(2);
const WebSocket = require(path.join(peerDir, "node_modules", "ws"));
const port = Number(portText);
const limit = Number(limitText);
const base = `ws://127.0.0.1:${port}`;

function fail(message) {
  throw new Error(message);
}

// A promise for `what`, failed after ms milliseconds.
function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// An open client whose incoming messages queue up for next().
async function open(urlPath) {
  const ws = new WebSocket(base + urlPath, { maxPayload: limit + 1024 });
  const queue = [];
  const waiting = [];
  ws.on("message", (data, isBinary) => {
    const item = { data: Buffer.from(data), isBinary };
    if (waiting.length > 0) waiting.shift()(item);
    else queue.push(item);
  });
  ws.closed = new Promise((resolve) => ws.on("close", (code) => resolve(code)));
  ws.next = () =>
    within(5000, `${urlPath}: a message`,
           new Promise((resolve) => (queue.length > 0 ? resolve(queue.shift()) : waiting.push(resolve))));
  await within(5000, `${urlPath}: the handshake`, new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  }));
  ws.on("error", () => {});  // a close the server starts is checked by its code
  return ws;
}

async function expectEcho(ws, data, isBinary, what) {
  ws.send(data, { binary: isBinary });
  const got = await ws.next();
  if (got.isBinary !== isBinary || !got.data.equals(Buffer.from(data))) {
    fail(`${what}: echo differs (${got.data.length} bytes, binary ${got.isBinary})`);
  }
}

async function echo() {
  const ws = await open("/echo");
  await expectEcho(ws, "héllo, wörld", false, "text");
  for (const size of [0, 1, 125, 126, 65535, 65536, limit]) {
    await expectEcho(ws, crypto.randomBytes(size), true, `binary of ${size} bytes`);
  }
  await expectEcho(ws, "t".repeat(limit), false, `text of ${limit} bytes`);

  // A fragmented message: three frames, the last one final.
  ws.send("frag", { fin: false });
  ws.send("men", { fin: false });
  ws.send("ted", { fin: true });
  const whole = await ws.next();
  if (whole.isBinary || whole.data.toString() !== "fragmented") {
    fail(`fragments: got '${whole.data.toString()}'`);
  }
  const pieces = [crypto.randomBytes(1000), crypto.randomBytes(70000), crypto.randomBytes(3)];
  pieces.forEach((piece, i) => ws.send(piece, { binary: true, fin: i === pieces.length - 1 }));
  const joined = await ws.next();
  if (!joined.isBinary || !joined.data.equals(Buffer.concat(pieces))) fail("binary fragments");

  // A ping gets a pong with the same payload.
  const pong = new Promise((resolve) => ws.once("pong", (data) => resolve(Buffer.from(data))));
  ws.ping("are you there");
  const pongData = await within(5000, "pong", pong);
  if (pongData.toString() !== "are you there") fail(`pong carried '${pongData}'`);

  // A normal close: the server answers with 1000.
  ws.close(1000, "bye");
  const code = await within(5000, "close", ws.closed);
  if (code !== 1000) fail(`a normal close got ${code}, not 1000`);
}

// A text message that is not UTF-8 (ws sends a Buffer as text without looking): 1007.
async function notUtf8() {
  const ws = await open("/echo");
  ws.send(Buffer.from([0x68, 0xc3, 0x28]), { binary: false });
  const code = await within(5000, "close after text that is not UTF-8", ws.closed);
  if (code !== 1007) fail(`text that is not UTF-8 got close ${code}, not 1007`);
}

async function tooBig() {
  const ws = await open("/echo");
  ws.send(crypto.randomBytes(limit + 1));
  const code = await within(5000, "close after a message over the limit", ws.closed);
  if (code !== 1009) fail(`a message of ${limit + 1} bytes got close ${code}, not 1009`);
  // The same limit for a message in fragments.
  const frags = await open("/echo");
  frags.send(crypto.randomBytes(limit), { fin: false });
  frags.send(crypto.randomBytes(1), { fin: true });
  const fragCode = await within(5000, "close after fragments over the limit", frags.closed);
  if (fragCode !== 1009) fail(`fragments over the limit got close ${fragCode}, not 1009`);
}

// A raw socket: writes `request` and returns everything the server sends until it closes.
function raw(request, afterUpgrade) {
  return within(5000, "a raw exchange", new Promise((resolve, reject) => {
    const chunks = [];
    const socket = net.connect(port, "127.0.0.1", () => socket.write(request));
    let upgraded = false;
    socket.on("data", (chunk) => {
      chunks.push(chunk);
      if (afterUpgrade && !upgraded && Buffer.concat(chunks).includes("\r\n\r\n")) {
        upgraded = true;
        socket.write(afterUpgrade);
      }
    });
    socket.on("end", () => { socket.end(); resolve(Buffer.concat(chunks)); });
    socket.on("error", reject);
  }));
}

function upgradeRequest(headers) {
  return `GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n${headers}\r\n`;
}

async function badInput() {
  const key = crypto.randomBytes(16).toString("base64");
  // An unmasked text frame after a good handshake: a client must mask, so close 1002.
  const reply = await raw(upgradeRequest(`Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n`),
                          Buffer.from([0x81, 0x02, 0x68, 0x69]));
  const head = reply.indexOf("\r\n\r\n");
  if (!reply.subarray(0, 13).equals(Buffer.from("HTTP/1.1 101 "))) fail("no 101 before the bad frame");
  const frame = reply.subarray(head + 4);
  if (frame.length < 4 || frame[0] !== 0x88 || frame.readUInt16BE(2) !== 1002) {
    fail(`an unmasked frame got ${frame.toString("hex")}, not close 1002`);
  }
  // A handshake without its key: 400. With version 8: 426, naming the version served.
  const noKey = (await raw(upgradeRequest("Sec-WebSocket-Version: 13\r\n"))).toString();
  if (!noKey.startsWith("HTTP/1.1 400 ")) fail(`no key got '${noKey.split("\r\n")[0]}', not 400`);
  const oldVersion =
      (await raw(upgradeRequest(`Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 8\r\n`))).toString();
  if (!oldVersion.startsWith("HTTP/1.1 426 ") || !/\r\nSec-WebSocket-Version: 13\r\n/i.test(oldVersion)) {
    fail(`version 8 got '${oldVersion.split("\r\n")[0]}', not 426 with Sec-WebSocket-Version: 13`);
  }
  // And ws itself refuses to connect where the server answers the upgrade with 404.
  const refused = new WebSocket(`${base}/nowhere`);
  const status = await within(5000, "a refused upgrade", new Promise((resolve) => {
    refused.on("unexpected-response", (_, res) => { resolve(res.statusCode); refused.terminate(); });
    refused.on("error", () => resolve(-1));
  }));
  if (status !== 404) fail(`/nowhere got ${status}, not 404`);
}

// Three members, each sends `count` messages; everyone gets all 3 * count, each
// sender's in order.
async function chat() {
  const count = 50;
  const members = [];
  for (let i = 0; i < 3; ++i) members.push(await open("/chat?room=foreign"));
  const received = members.map((ws) => {
    const got = [];
    return new Promise((resolve) => {
      ws.removeAllListeners("message");
      ws.on("message", (data) => {
        got.push(data.toString());
        if (got.length === 3 * count) resolve(got);
      });
    });
  });
  for (let n = 0; n < count; ++n) {
    members.forEach((ws, i) => ws.send(`${i}:${n}`));
  }
  const all = await within(10000, "every chat message", Promise.all(received));
  all.forEach((got, member) => {
    for (let sender = 0; sender < 3; ++sender) {
      const mine = got.filter((m) => m.startsWith(`${sender}:`));
      const expected = Array.from({ length: count }, (_, n) => `${sender}:${n}`);
      if (mine.join() !== expected.join()) {
        fail(`member ${member} got sender ${sender}'s messages as ${mine.slice(0, 5)}...`);
      }
    }
  });
  for (const ws of members) {
    ws.close(1000);
    if ((await within(5000, "chat close", ws.closed)) !== 1000) fail("a chat member's close");
  }
}

(async () => {
  await echo();
  await tooBig();
  await notUtf8();
  await badInput();
  if (mode === "chat") await chat();
})().then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`ws_foreign_client: ${error.message}\n`);
    process.exit(1);
  });
