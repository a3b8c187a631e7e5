// What both ends of a WebSocket upgrade (RFC 6455, section 4) compute alike: the
// Sec-WebSocket-Accept that answers a key, and the reading of header values, whose
// names and tokens compare without regard to case. echo-server and loadgen both link
// nettle for the SHA-1 and base64.
#pragma once

#include <nettle/base64.h>
#include <nettle/sha1.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

namespace cb::websocket {

/// The GUID a server appends to the client's key before hashing it.
inline constexpr std::string_view kAcceptGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

inline std::string base64(const uint8_t* data, size_t length_bytes) {
  std::string text(BASE64_ENCODE_RAW_LENGTH(length_bytes), '\0');
  base64_encode_raw(text.data(), length_bytes, data);
  return text;
}

/// base64(SHA-1(key + GUID)): what a server answers `key` with, and a client expects.
inline std::string accept_for(std::string_view key) {
  sha1_ctx context{};
  sha1_init(&context);
  sha1_update(&context, key.size(), reinterpret_cast<const uint8_t*>(key.data()));
  sha1_update(&context, kAcceptGuid.size(), reinterpret_cast<const uint8_t*>(kAcceptGuid.data()));
  uint8_t digest[SHA1_DIGEST_SIZE];
  sha1_digest(&context, sizeof digest, digest);
  return base64(digest, sizeof digest);
}

inline bool equal_ignoring_case(std::string_view a, std::string_view b) {
  const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [&](char x, char y) { return lower(x) == lower(y); });
}

/// `text` without the spaces and tabs around it.
inline std::string_view trim_blanks(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

/// Whether the comma-separated `list` holds `token`, case-insensitively (a Connection
/// header may say "keep-alive, Upgrade").
inline bool has_token(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    const size_t comma = list.find(',');
    if (equal_ignoring_case(trim_blanks(list.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace cb::websocket
