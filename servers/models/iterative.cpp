// iterative: one thread accepts a connection and echoes it until the peer closes,
// then accepts the next. The same thread accepts and reads; while it serves one
// client, every other client waits unanswered in the listen backlog. Over UDP the one
// thread blocks until a datagram is there, answers it and reads the next; while it
// waits for room to send one answer (briefly, then the answer is dropped and counted)
// nobody else is served. A room (ws's /chat) is a room of one: the client being
// served is its only member, and gets back what it publishes.
#include <poll.h>

#include <vector>

#include "servers/io/accept_loop.hpp"
#include "servers/io/blocking_connection.hpp"
#include "servers/io/datagrams.hpp"
#include "servers/io/rooms.hpp"

namespace cb::servers {
namespace {

// Datagrams handled between two looks at the stop signal while they keep coming, so
// that a flood cannot keep the server from stopping.
constexpr size_t kDatagramsPerTurn = 64;

// How long one answer may wait for room in a full send buffer before it is dropped: as a
// blocking sendto would wait, but bounded, since a UDP peer gets no promise anyway.
constexpr int kSendWaitMs = 100;

}  // namespace

int serve_iterative(const ServeContext& given, std::string& error) {
  // A room has one member, the one client served: what it publishes comes back to it.
  SoloRooms rooms;
  const ServeContext ctx = relaying_context(given, rooms);
  std::vector<char> buffer(ctx.options.buffer_bytes);
  AcceptHooks hooks;
  hooks.on_connection = [&](net::Fd connection) {
    ctx.stats.on_open();
    serve_connection(connection.get(), buffer, ctx);
    ctx.stats.on_close();
  };
  return accept_loop(ctx, hooks, error);
}

// Its waits are in poll() on the socket and the stop pipe together, so SIGTERM ends
// it wherever it blocks.
int serve_iterative_udp(const ServeContext& ctx, std::string& error) {
  DatagramResponder datagrams(ctx);
  if (!datagrams.ready(error)) return 1;
  ctx.ready();
  for (;;) {
    switch (datagrams.respond(kDatagramsPerTurn, kSendWaitMs, error)) {
      case DrainEnd::kDrained:
        if (wait_ready(ctx.listener.get(), POLLIN, ctx.stop, -1) == Wait::kStopped) return 0;
        break;
      case DrainEnd::kBudgetSpent:
        if (ctx.stop.stopped()) return 0;
        break;
      case DrainEnd::kStopped:
        return 0;
      case DrainEnd::kFatal:
        return 1;
    }
  }
}

}  // namespace cb::servers
