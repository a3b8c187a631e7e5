#include "servers/protocol/ws.hpp"

#include "common/ws_handshake.hpp"

#include <sys/types.h>
#include <wslay/wslay.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <new>

namespace cb::servers {
namespace {

constexpr size_t kMaxRoomBytes = 64;
constexpr uint16_t kPolicyViolation = 1008;

// A Sec-WebSocket-Key is 16 bytes in base64: 22 characters of the alphabet and "==".
bool valid_key(std::string_view key) {
  if (key.size() != 24 || key.substr(22) != "==") return false;
  return std::all_of(key.begin(), key.begin() + 22, [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '/';
  });
}

bool valid_room(std::string_view room) {
  return !room.empty() && room.size() <= kMaxRoomBytes &&
         std::all_of(room.begin(), room.end(), [](char c) {
           return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
         });
}

// The room named by a /chat query ("room=NAME", among other parameters or alone), or
// the default; empty when the name is not a valid one.
std::string room_of(std::string_view query) {
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view param = query.substr(0, amp);
    if (param.substr(0, 5) == "room=") {
      const std::string_view name = param.substr(5);
      return valid_room(name) ? std::string(name) : std::string();
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::string(WsSession::kDefaultRoom);
}

// The chat page: a name, a room, a message box and the conversation. It connects to
// /chat?room=NAME on the server that served it and sends each message as JSON
// {"name", "text"}; the server relays it untouched.
constexpr std::string_view kChatPage = R"html(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>chat</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<style>
body{font:15px system-ui,sans-serif;max-width:40em;margin:1em auto;padding:0 1em;color:#222}
h1{font-size:1.3em}input,button{font:inherit;padding:.3em}
#log{border:1px solid #bbb;height:18em;overflow-y:auto;padding:.4em;margin:.6em 0;background:#fafafa}
#log p{margin:.15em 0}#log b{color:#2457a6}#status{color:#666}
</style></head><body>
<h1>chat</h1>
<form id="joinform">name <input id="name" size="12" value="guest" required>
room <input id="room" size="12" value="lobby" pattern="[A-Za-z0-9._\-]{1,64}" required>
<button id="join">join</button> <span id="status">not connected</span></form>
<div id="log"></div>
<form id="sendform"><input id="text" size="40" autocomplete="off" placeholder="message">
<button id="send">send</button></form>
<script>
"use strict";
let ws = null;
const $ = (id) => document.getElementById(id);
function line(who, text) {
  const p = document.createElement("p");
  if (who) { const b = document.createElement("b"); b.textContent = who + ": "; p.append(b); }
  p.append(text);
  $("log").append(p);
  $("log").scrollTop = $("log").scrollHeight;
}
$("joinform").onsubmit = (e) => {
  e.preventDefault();
  if (ws) ws.close(1000);
  const room = $("room").value;
  const sock = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") +
                             location.host + "/chat?room=" + encodeURIComponent(room));
  ws = sock;
  $("status").textContent = "connecting";
  sock.onopen = () => { $("status").textContent = "in room " + room; };
  sock.onclose = (ev) => {
    if (ws === sock) { ws = null; $("status").textContent = "closed (" + ev.code + ")"; }
  };
  sock.onmessage = (ev) => {
    let m;
    try { m = JSON.parse(ev.data); } catch (err) { m = {name: "?", text: String(ev.data)}; }
    line(String(m.name), String(m.text));
  };
};
$("sendform").onsubmit = (e) => {
  e.preventDefault();
  const text = $("text").value;
  if (!ws || ws.readyState !== WebSocket.OPEN || text === "") return;
  ws.send(JSON.stringify({name: $("name").value, text: text}));
  $("text").value = "";
};
</script></body></html>
)html";

}  // namespace

std::string_view ws_chat_page() { return kChatPage; }

bool valid_utf8(std::span<const char> text) {
  const auto* at = reinterpret_cast<const unsigned char*>(text.data());
  const auto* const end = at + text.size();
  while (at < end) {
    const unsigned char lead = *at;
    if (lead < 0x80) {
      ++at;
      continue;
    }
    // The lead byte says how many continuation bytes follow (0x80-0xbf each); the first
    // of them is narrower where that rules out overlong forms (e0, f0), surrogates (ed)
    // and code points past U+10FFFF (f4). c0, c1 and f5-ff never appear.
    size_t follow = 0;
    unsigned char low = 0x80, high = 0xbf;
    if (lead >= 0xc2 && lead <= 0xdf) {
      follow = 1;
    } else if (lead >= 0xe0 && lead <= 0xef) {
      follow = 2;
      if (lead == 0xe0) low = 0xa0;
      if (lead == 0xed) high = 0x9f;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      follow = 3;
      if (lead == 0xf0) low = 0x90;
      if (lead == 0xf4) high = 0x8f;
    } else {
      return false;
    }
    if (static_cast<size_t>(end - at) <= follow) return false;
    if (at[1] < low || at[1] > high) return false;
    for (size_t i = 2; i <= follow; ++i)
      if ((at[i] & 0xc0) != 0x80) return false;
    at += follow + 1;
  }
  return true;
}

void append_ws_frame(std::string& out, uint8_t opcode, std::span<const char> payload) {
  char head[10];
  size_t head_bytes = 2;
  head[0] = static_cast<char>(0x80 | (opcode & 0x0f));
  const uint64_t size = payload.size();
  if (size < 126) {
    head[1] = static_cast<char>(size);
  } else if (size <= 0xffff) {
    head[1] = 126;
    head[2] = static_cast<char>(size >> 8);
    head[3] = static_cast<char>(size);
    head_bytes = 4;
  } else {
    head[1] = 127;
    for (int i = 0; i < 8; ++i) head[2 + i] = static_cast<char>(size >> (8 * (7 - i)));
    head_bytes = 10;
  }
  out.append(head, head_bytes);
  out.append(payload.data(), payload.size());
}

// wslay's callbacks: they read what on_read() was given and append to output(), so
// wslay never touches a socket.
struct WsCallbacks {
  static ssize_t recv(wslay_event_context_ptr ctx, uint8_t* buf, size_t len, int,
                      void* user_data) {
    WsSession& self = *static_cast<WsSession*>(user_data);
    if (self.input_.empty()) {
      wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
      return -1;
    }
    const size_t n = std::min(len, self.input_.size());
    std::memcpy(buf, self.input_.data(), n);
    self.input_ = self.input_.subspan(n);
    return static_cast<ssize_t>(n);
  }

  static ssize_t send(wslay_event_context_ptr, const uint8_t* data, size_t len, int,
                      void* user_data) {
    WsSession& self = *static_cast<WsSession*>(user_data);
    self.output_.append(reinterpret_cast<const char*>(data), len);
    return static_cast<ssize_t>(len);
  }

  // A message's echo (or its relay) is written here, at once, not queued in wslay: wslay
  // sends its control frames first, so a close that came in the same read as messages
  // would otherwise be answered before their echoes, which then never went out. What
  // wslay holds (pongs of earlier pings) goes out first, so answers keep the order of
  // what they answer. wslay reads nothing after a close or a bad frame, so nothing is
  // written after its close.
  static void message(wslay_event_context_ptr ctx, const wslay_event_on_msg_recv_arg* arg,
                      void* user_data) {
    WsSession& self = *static_cast<WsSession*>(user_data);
    if (arg->opcode != WSLAY_TEXT_FRAME && arg->opcode != WSLAY_BINARY_FRAME) return;
    if (self.closing_) return;
    if (wslay_event_want_write(ctx) && wslay_event_send(ctx) != 0) {
      self.closing_ = true;
      return;
    }
    const std::span<const char> payload(reinterpret_cast<const char*>(arg->msg),
                                        arg->msg_length);
    // wslay does not look inside text; the whole message is checked, as a code point
    // may span fragments. Nothing after it is taken.
    if (arg->opcode == WSLAY_TEXT_FRAME && !valid_utf8(payload)) {
      self.close_with(WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA);
      self.closing_ = true;
      return;
    }
    ++self.taken_;
    if (!self.chat_) {
      append_ws_frame(self.output_, arg->opcode, payload);
      return;
    }
    if (!self.in_room_) return;
    std::string frame;
    append_ws_frame(frame, arg->opcode, payload);
    self.rooms_->publish(self, frame);
  }
};

namespace {

const wslay_event_callbacks kCallbacks{
    .recv_callback = WsCallbacks::recv,
    .send_callback = WsCallbacks::send,
    .genmask_callback = nullptr,
    .on_frame_recv_start_callback = nullptr,
    .on_frame_recv_chunk_callback = nullptr,
    .on_frame_recv_end_callback = nullptr,
    .on_msg_recv_callback = WsCallbacks::message,
};

}  // namespace

WsSession::WsSession(const SessionLimits& limits)
    : rooms_(limits.rooms), max_message_bytes_(limits.max_message_bytes) {}

WsSession::~WsSession() {
  leave_room();
  if (ws_ != nullptr) wslay_event_context_free(ws_);
}

void WsSession::leave_room() {
  if (in_room_) rooms_->leave(*this);
  in_room_ = false;
}

Reply WsSession::on_read(std::span<const char> input) {
  taken_ = 0;
  if (state_ == State::kHandshake && !closing_) read_head(input);
  if (state_ == State::kOpen && !closing_ && !input.empty()) read_frames(input);
  if (closing_) leave_room();
  return {.send_input = false, .messages = taken_};
}

void WsSession::read_head(std::span<const char>& input) {
  const size_t searched = head_.size() < 3 ? 0 : head_.size() - 3;
  const size_t room = kMaxHeadBytes - head_.size();
  const size_t taken = std::min(input.size(), room);
  head_.append(input.data(), taken);
  const size_t end = head_.find("\r\n\r\n", searched);
  if (end == std::string::npos) {
    input = input.subspan(taken);
    if (head_.size() >= kMaxHeadBytes) respond(431, "Request Header Fields Too Large");
    return;
  }
  // What follows the head (frames a client sent at once) goes back to the caller.
  const size_t head_bytes = end + 4;
  const size_t from_input = head_bytes - (head_.size() - taken);
  input = input.subspan(from_input);
  head_.resize(head_bytes);
  answer_head(head_);
  clear_buffer(head_, 0);
}

void WsSession::answer_head(std::string_view head) {
  // The request line: METHOD SP TARGET SP VERSION.
  const size_t line_end = head.find("\r\n");
  const std::string_view line = head.substr(0, line_end);
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return respond(400, "Bad Request");
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (version != "HTTP/1.1" && version != "HTTP/1.0") return respond(400, "Bad Request");

  std::string_view upgrade, connection, key, ws_version;
  std::string_view rest = head.substr(line_end + 2);
  while (!rest.empty()) {
    const size_t eol = rest.find("\r\n");
    const std::string_view header = rest.substr(0, eol);
    rest.remove_prefix(eol == std::string_view::npos ? rest.size() : eol + 2);
    if (header.empty()) break;
    const size_t colon = header.find(':');
    if (colon == std::string_view::npos || colon == 0) return respond(400, "Bad Request");
    const std::string_view name = header.substr(0, colon);
    const std::string_view value = websocket::trim_blanks(header.substr(colon + 1));
    if (websocket::equal_ignoring_case(name, "upgrade")) upgrade = value;
    if (websocket::equal_ignoring_case(name, "connection")) connection = value;
    if (websocket::equal_ignoring_case(name, "sec-websocket-key")) key = value;
    if (websocket::equal_ignoring_case(name, "sec-websocket-version")) ws_version = value;
  }

  const size_t question = target.find('?');
  const std::string_view path = target.substr(0, question);
  const std::string_view query =
      question == std::string_view::npos ? std::string_view() : target.substr(question + 1);
  const bool head_only = method == "HEAD";
  if (method != "GET" && !head_only) return respond(405, "Method Not Allowed", "Allow: GET\r\n");
  if (path == "/") {
    return respond(200, "OK", {}, "text/html; charset=utf-8", kChatPage, head_only);
  }
  if (path != "/echo" && path != "/chat") return respond(404, "Not Found");
  const bool wants_upgrade =
      websocket::has_token(connection, "upgrade") && websocket::has_token(upgrade, "websocket");
  if (!wants_upgrade || head_only)
    return respond(426, "Upgrade Required", "Upgrade: websocket\r\nConnection: Upgrade\r\n");
  if (ws_version != "13")
    return respond(426, "Upgrade Required", "Sec-WebSocket-Version: 13\r\n");
  if (!valid_key(key)) return respond(400, "Bad Request");
  if (path == "/chat") {
    if (rooms_ == nullptr) return respond(501, "Not Implemented", {}, "text/plain",
                                          "this model relays no rooms: /chat is not served, "
                                          "/echo is\n");
    room_ = room_of(query);
    if (room_.empty()) return respond(400, "Bad Request");
    chat_ = true;
  }
  if (!accept(key)) return;
  if (chat_) {
    in_room_ = rooms_->join(*this, room_);
    if (!in_room_) {
      // The 101 is out: the refusal is a close frame.
      const char reason[] = {static_cast<char>(1011 >> 8), static_cast<char>(1011 & 0xff)};
      append_ws_frame(output_, WSLAY_CONNECTION_CLOSE, reason);
      closing_ = true;
    }
  }
}

void WsSession::respond(int status, std::string_view reason, std::string_view extra_headers,
                        std::string_view content_type, std::string_view body,
                        bool head_only) {
  const std::string text = body.empty() ? std::string(reason) + "\n" : std::string();
  const std::string_view content = body.empty() ? std::string_view(text) : body;
  output_ += "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) + "\r\n";
  output_ += extra_headers;
  output_ += "Content-Type: " + std::string(content_type) +
             "\r\nContent-Length: " + std::to_string(content.size()) +
             "\r\nConnection: close\r\n\r\n";
  if (!head_only) output_ += content;
  closing_ = true;
  state_ = State::kDone;
}

bool WsSession::accept(std::string_view key) {
  const wslay_event_callbacks callbacks = kCallbacks;
  if (wslay_event_context_server_init(&ws_, &callbacks, this) != 0) {
    ws_ = nullptr;
    respond(503, "Service Unavailable");
    return false;
  }
  wslay_event_config_set_max_recv_msg_length(ws_, max_message_bytes_);
  output_ +=
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: " +
      websocket::accept_for(key) + "\r\n\r\n";
  state_ = State::kOpen;
  return true;
}

uint32_t WsSession::read_frames(std::span<const char> input) {
  input_ = input;
  const int received = wslay_event_recv(ws_);
  input_ = {};
  if (received != 0) {
    // wslay answers most bad frames with a close of its own, but gives up on some (a
    // control frame fragmented or over 125 bytes) with an error: those get 1002 here.
    // Out of memory, nothing more can be said.
    if (received != WSLAY_ERR_NOMEM && !wslay_event_get_close_sent(ws_)) {
      wslay_event_send(ws_);  // what it queued before the bad frame goes first
      close_with(WSLAY_CODE_PROTOCOL_ERROR);
    }
    closing_ = true;
    return taken_;
  }
  // An eviction during the read (this session's own publish) queued the last frame.
  if (closing_) return taken_;
  if (wslay_event_send(ws_) != 0) closing_ = true;
  // wslay reads nothing more once a close came or it failed a frame, so the connection
  // is done once its answer is out. A bad close frame cut over reads can leave wslay
  // neither reading nor writing its answer: that answer is 1002, here.
  if (!wslay_event_want_read(ws_)) {
    if (!wslay_event_get_close_sent(ws_)) close_with(WSLAY_CODE_PROTOCOL_ERROR);
    closing_ = true;
  }
  return taken_;
}

void WsSession::close_with(uint16_t code) {
  const char payload[] = {static_cast<char>(code >> 8), static_cast<char>(code & 0xff)};
  append_ws_frame(output_, WSLAY_CONNECTION_CLOSE, payload);
}

void WsSession::evict() {
  leave_room();
  if (state_ == State::kOpen) {
    const char payload[] = {static_cast<char>(kPolicyViolation >> 8),
                            static_cast<char>(kPolicyViolation & 0xff), 'b', 'a', 'c', 'k',
                            'l', 'o', 'g'};
    append_ws_frame(output_, WSLAY_CONNECTION_CLOSE, payload);
  }
  Session::evict();
}

std::unique_ptr<Session> make_ws_session(const SessionLimits& limits) {
  return std::unique_ptr<Session>(new (std::nothrow) WsSession(limits));
}

}  // namespace cb::servers
