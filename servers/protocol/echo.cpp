// Echo (RFC 862), over a stream or datagrams: the answer to every read is the read
// itself, so the session copies nothing and holds nothing; the engine sends the bytes
// back from its own read buffer. It never closes a connection and never times out.
#include <memory>
#include <new>

#include "servers/protocol/session.hpp"

namespace cb::servers {
namespace {

class EchoSession final : public Session {
 public:
  Reply on_read(std::span<const char>) override { return {.send_input = true}; }
};

}  // namespace

std::unique_ptr<Session> make_echo_session(const SessionLimits&) {
  return std::unique_ptr<Session>(new (std::nothrow) EchoSession);
}

}  // namespace cb::servers
