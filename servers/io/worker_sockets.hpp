// The listening sockets of the models with workers (prefork, reactors). With --accept
// shared (the default) and exclusive every worker accepts from the one socket
// echo-server bound (how each waits on it is the libuv engine's concern). With --accept
// reuseport, worker 0 keeps that socket (echo-server made it with SO_REUSEPORT) and
// each other worker gets its own SO_REUSEPORT socket on the same address, so the kernel
// spreads connections over them. The owner keeps them all open until every worker is
// done: a socket nobody accepts from would leave the connections hashed to it hanging.
// Over UDP every worker has a socket of its own, whatever --accept says (echo-server
// binds the first one with SO_REUSEPORT for that): loops sharing one UDP socket would
// all wake for every datagram, and the kernel spreads senders over the sockets instead.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "net/fd.hpp"
#include "servers/model.hpp"

namespace cb::servers {

class WorkerSockets {
 public:
  /// Opens what `count` workers need (nothing for tcp but with --accept reuseport). Fails with
  /// "<role> I's socket: <reason>", e.g. "prefork: worker 1's socket: ...".
  int open(const ServeContext& ctx, size_t count, std::string_view role, std::string& error);

  /// The socket worker `index` accepts from.
  const net::Fd& of(size_t index) const {
    return index > 0 && index <= own_.size() ? own_[index - 1] : *shared_;
  }

  /// The sockets opened here (workers 1..N-1 with --accept reuseport, or over udp).
  const std::vector<net::Fd>& own() const { return own_; }

 private:
  const net::Fd* shared_ = nullptr;
  std::vector<net::Fd> own_;
};

}  // namespace cb::servers
