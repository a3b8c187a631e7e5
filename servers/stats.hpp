// Counters every model keeps for its exit summary. They live in anonymous shared
// memory so that the fork model's children can count into the parent's copy;
// every field is a lock-free atomic, safe from any thread or process.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "servers/protocol/protocol.hpp"

namespace cb::servers {

struct ServerStats {
  std::atomic<uint64_t> accepted{0};      ///< connections taken and served
  std::atomic<uint64_t> refused{0};       ///< closed at once: over --max-connections, no
                                          ///< thread/process to spare, out of descriptors
  std::atomic<uint64_t> active{0};        ///< open now
  std::atomic<uint64_t> peak_active{0};   ///< most open at once
  std::atomic<uint64_t> bytes_echoed{0};  ///< bytes written back to clients
  std::atomic<uint64_t> errors{0};        ///< connections ended by a reset or I/O error
  /// Messages answered (a protocol's messages_key: http's responses); over datagrams,
  /// datagrams answered.
  std::atomic<uint64_t> messages{0};
  /// udp: datagrams received whose echo was given up because the socket's send buffer
  /// (or the model's send queue) stayed full, or the server stopped before it went out.
  /// ws: room messages prefork's relay gave up for a worker whose link stayed full
  /// (Relay::kMaxQueuedBytes), once per worker (fork's relay evicts instead).
  std::atomic<uint64_t> dropped{0};
  /// Bytes every session holds now for messages not yet complete (bounded by
  /// --max-request-memory: HeldBytesBudget), and messages refused because of that bound.
  std::atomic<uint64_t> held_bytes{0};
  std::atomic<uint64_t> overloaded{0};
  /// Connections closed because their session's deadline passed.
  std::atomic<uint64_t> timed_out{0};
  /// Members of a room evicted for letting more than --max-backlog wait for them.
  std::atomic<uint64_t> evicted{0};

  /// Models with workers (prefork, reactors, threadpool) count each worker's accepted
  /// connections here, worker i in worker_accepted[i], and set `workers`; the summary
  /// then shows how the load was spread. Workers beyond kMaxWorkers share the last slot.
  static constexpr size_t kMaxWorkers = 256;
  std::atomic<uint32_t> workers{0};
  /// prefork: workers replaced after dying of a signal. `counts_restarts` makes the
  /// summary show it (as " restarts=N"), so a model that cannot restart never shows 0.
  std::atomic<uint64_t> restarts{0};
  std::atomic<bool> counts_restarts{false};
  std::atomic<uint64_t> worker_accepted[kMaxWorkers]{};
  /// The libuv engine's workers (prefork, reactors over tcp and http): times a worker
  /// was woken for the listener and found nothing to accept, another worker having
  /// taken the connection first (the thundering herd --accept exclusive and reuseport
  /// avoid). A wake-up whose loser sees the listener empty before epoll reports it is
  /// not seen, so this is a lower bound. `counts_empty_wakeups` makes the summary show
  /// it (" empty_wakeups=N").
  std::atomic<uint64_t> empty_wakeups{0};
  std::atomic<bool> counts_empty_wakeups{false};
  /// The connections each worker has open now (worker i in worker_active[i]), so that
  /// a worker process that dies can be taken out of `active` by whoever reaps it:
  /// prefork, whose --max-connections would otherwise keep a dead worker's slots.
  static constexpr size_t kMaxWorkerSlots = 4096;  // the most --workers allows
  std::atomic<uint64_t> worker_active[kMaxWorkerSlots]{};

  /// Counts one connection accepted (or, for udp, one datagram echoed) by worker
  /// `index` (clamped to the last slot).
  void on_worker_accept(size_t index);

  /// Counts a connection that is now being served (accepted, active, peak), by
  /// worker `worker` when it is one (ServeContext::worker_index, -1 otherwise).
  void on_open(int worker = -1);
  /// Counts the end of a connection counted by on_open, with the same `worker`.
  void on_close(int worker = -1);
  /// Takes worker `worker`'s connections out of `active` once it is dead: the kernel
  /// closed them when it died, and nobody else would count them closed. Call only
  /// after the worker is reaped. Returns how many there were.
  uint64_t forget_worker(int worker);

  /// "accepted=.. refused=.. peak_concurrent=.. bytes_echoed=.. errors=.." and, for a
  /// model with workers, " per_worker=12,9,11" (then " empty_wakeups=N" where counted). After errors come what `protocol`'s row
  /// asks for: its messages_key (http: " responses=.."), " overloaded=.." when it
  /// honours the held-bytes budget, " timed_out=.." when it honours deadlines, and
  /// " evicted=.. dropped=.." when it relays between connections (ws). A
  /// datagram protocol has no connections: "datagrams=.. bytes_echoed=.. dropped=..
  /// errors=.." (errors: receive and send failures other than a full send buffer), and
  /// per_worker counts datagrams.
  std::string summary(const Protocol& protocol = default_protocol()) const;

 private:
  std::string per_worker_summary() const;
};

static_assert(std::atomic<uint64_t>::is_always_lock_free,
              "ServerStats is shared across processes and needs lock-free atomics");

/// Maps a zeroed ServerStats in MAP_SHARED|MAP_ANONYMOUS memory, inherited by
/// forked children. Never unmapped: it lives as long as the process.
/// Throws std::system_error if mmap fails.
ServerStats& make_shared_stats();

}  // namespace cb::servers
