#include "servers/io/rooms.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>

namespace cb::servers {

LoopRooms::LoopRooms(uint64_t max_backlog_bytes, std::atomic<uint64_t>& evicted,
                     bool track_touched)
    : max_backlog_bytes_(max_backlog_bytes), evicted_(evicted), track_touched_(track_touched) {}

bool LoopRooms::join(Session& member, std::string_view room) {
  leave(member);
  auto [entry, _] = rooms_.try_emplace(std::string(room));
  entry->second.push_back(&member);
  room_of_.emplace(&member, entry->first);
  return true;
}

void LoopRooms::leave(Session& member) {
  const auto found = room_of_.find(&member);
  if (found == room_of_.end()) return;
  const auto room = rooms_.find(found->second);
  std::vector<Session*>& members = room->second;
  // Order among members does not matter: each gets every message in publish order.
  const auto at = std::find(members.begin(), members.end(), &member);
  *at = members.back();
  members.pop_back();
  if (members.empty()) rooms_.erase(room);
  room_of_.erase(found);
  if (touched_set_.erase(&member) > 0) std::erase(touched_, &member);
}

void LoopRooms::touch(Session& member) {
  if (track_touched_ && touched_set_.insert(&member).second) touched_.push_back(&member);
}

void LoopRooms::publish(Session& from, std::span<const char> bytes) {
  const auto found = room_of_.find(&from);
  if (found == room_of_.end()) return;
  // The room's name outlives the walk, which may take `from` out of the room.
  const std::string room = found->second;
  walk(rooms_.find(room)->second, bytes);
  if (forward_) forward_(room, bytes);
}

void LoopRooms::deliver(std::string_view room, std::span<const char> bytes) {
  const auto found = rooms_.find(std::string(room));
  if (found != rooms_.end()) walk(found->second, bytes);
}

void LoopRooms::walk(std::vector<Session*>& members, std::span<const char> bytes) {
  evictees_.clear();
  for (Session* member : members) {
    if (member->closing()) continue;
    if (member->output().size() + bytes.size() > max_backlog_bytes_) {
      evictees_.push_back(member);
      continue;
    }
    member->output().append(bytes.data(), bytes.size());
    touch(*member);
  }
  // Taken out after the walk, which leave() would disturb.
  for (Session* member : evictees_) {
    leave(*member);
    member->evict();
    evicted_.fetch_add(1, std::memory_order_relaxed);
    touch(*member);  // its close goes out after what it has
  }
}

void LoopRooms::take_touched(std::vector<Session*>& out) {
  out.clear();
  out.swap(touched_);
  touched_set_.clear();
}

// ---- LoopHub ----

LoopHub::LoopHub(size_t loops) : loops_(loops), inboxes_(new Inbox[loops]) {}

void LoopHub::attach(size_t index, std::function<void()> wake) {
  const std::lock_guard lock(inboxes_[index].mutex);
  inboxes_[index].wake = std::move(wake);
}

void LoopHub::detach(size_t index) {
  const std::lock_guard lock(inboxes_[index].mutex);
  inboxes_[index].wake = nullptr;
  inboxes_[index].posted.clear();
}

void LoopHub::post(size_t from, std::string_view room, std::span<const char> bytes) {
  for (size_t i = 0; i < loops_; ++i) {
    if (i == from) continue;
    Inbox& inbox = inboxes_[i];
    const std::lock_guard lock(inbox.mutex);
    if (!inbox.wake) continue;
    inbox.posted.push_back({std::string(room), std::string(bytes.data(), bytes.size())});
    if (inbox.posted.size() == 1) inbox.wake();
  }
}

void LoopHub::take(size_t index, std::vector<Posted>& out) {
  out.clear();
  const std::lock_guard lock(inboxes_[index].mutex);
  out.swap(inboxes_[index].posted);
}

// ---- ProcessLink and Relay ----

void relay_frame(std::string& out, std::string_view room, std::span<const char> bytes) {
  const size_t length = 1 + room.size() + bytes.size();
  for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>(length >> shift);
  out += static_cast<char>(room.size());
  out.append(room);
  out.append(bytes.data(), bytes.size());
}

size_t relay_frame_size(std::string_view in) {
  if (in.size() < 4) return 0;
  size_t length = 0;
  for (size_t i = 0; i < 4; ++i) length = (length << 8) | static_cast<uint8_t>(in[i]);
  return in.size() >= 4 + length ? 4 + length : 0;
}

void ProcessLink::post(size_t, std::string_view room, std::span<const char> bytes) {
  std::string frame;
  relay_frame(frame, room, bytes);
  std::string_view rest = frame;
  while (!rest.empty()) {
    const ssize_t n = ::send(socket_, rest.data(), rest.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      rest.remove_prefix(static_cast<size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd writable{socket_, POLLOUT, 0};
      ::poll(&writable, 1, 100);  // the relay always reads: wait for it
    } else {
      return;  // the master is gone: the server is stopping
    }
  }
}

void ProcessLink::take(size_t, std::vector<Posted>& out) {
  out.clear();
  char chunk[64 * 1024];
  for (;;) {
    const ssize_t n = ::recv(socket_, chunk, sizeof chunk, MSG_DONTWAIT);
    if (n > 0) {
      in_.append(chunk, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;  // EAGAIN, or the master gone (the server is stopping)
  }
  size_t at = 0;
  while (const size_t size = relay_frame_size(std::string_view(in_).substr(at))) {
    const auto room_size = static_cast<uint8_t>(in_[at + 4]);
    out.push_back(
        {in_.substr(at + 5, room_size), in_.substr(at + 5 + room_size, size - 5 - room_size)});
    at += size;
  }
  in_.erase(0, at);
}

void Relay::set(size_t index, net::Fd socket) {
  if (ends_.size() <= index) ends_.resize(index + 1);
  ends_[index] = End{std::move(socket), {}, {}};
}

void Relay::add(net::Fd socket) {
  for (size_t i = 0; i < ends_.size(); ++i)
    if (!ends_[i].socket.valid()) return set(i, std::move(socket));
  set(ends_.size(), std::move(socket));
}

void Relay::drop(size_t index) {
  if (index < ends_.size()) ends_[index] = End{};
}

size_t Relay::add_pollfds(std::vector<pollfd>& fds) const {
  const size_t first = fds.size();
  for (const End& end : ends_) {
    const short events = end.out.empty() ? POLLIN : static_cast<short>(POLLIN | POLLOUT);
    fds.push_back({end.socket.get(), events, 0});  // -1 (no worker): poll skips it
  }
  return first;
}

void Relay::close_in_child() const {
  for (const End& end : ends_)
    if (end.socket.valid()) ::close(end.socket.get());
}

void Relay::flush(End& end) {
  for (;;) {
    // A worker that fell behind gets its notice once what was queued before is out.
    if (end.evicting && !end.notified && end.out.empty()) {
      relay_frame(end.out, {}, {});
      end.notified = true;
    }
    if (end.out.empty()) return;
    const ssize_t n =
        ::send(end.socket.get(), end.out.data(), end.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      end.out.erase(0, static_cast<size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      return;  // EAGAIN: POLLOUT says when; an error: the worker is gone, drop() follows
    }
  }
}

void Relay::serve(const std::vector<pollfd>& fds, size_t first) {
  char chunk[64 * 1024];
  for (size_t i = 0; i < ends_.size(); ++i) {
    End& from = ends_[i];
    if (!from.socket.valid() || (fds[first + i].revents & (POLLIN | POLLHUP | POLLERR)) == 0)
      continue;
    bool gone = false;
    for (;;) {
      const ssize_t n = ::recv(from.socket.get(), chunk, sizeof chunk, MSG_DONTWAIT);
      if (n > 0) {
        from.in.append(chunk, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      gone = n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);  // the worker died
      break;
    }
    // Whole frames go to every other worker (every worker, with members' ends), in the
    // order this one sent them.
    size_t at = 0;
    while (const size_t size = relay_frame_size(std::string_view(from.in).substr(at))) {
      for (size_t j = 0; j < ends_.size(); ++j) {
        End& to = ends_[j];
        if ((j == i && !members_) || !to.socket.valid() || to.evicting) continue;
        if (members_ && to.out.size() + size > backlog_bytes_) {
          to.evicting = true;  // flush() queues the notice once the rest is out
          continue;
        }
        if (to.out.size() + size > kMaxQueuedBytes) {
          dropped_.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        to.out.append(from.in, at, size);
      }
      at += size;
    }
    from.in.erase(0, at);
    if (gone) from = End{};
  }
  for (End& end : ends_)
    if (end.socket.valid()) flush(end);
}

// ---- SharedRooms ----

SharedRooms::SharedRooms(uint64_t max_backlog_bytes, std::atomic<uint64_t>& evicted)
    : max_backlog_bytes_(max_backlog_bytes), evicted_(evicted) {}

namespace {

// Reads a wakeup pipe empty.
void drain(int fd) {
  char drained[64];
  while (::read(fd, drained, sizeof(drained)) > 0) {
  }
}

}  // namespace

bool SharedRooms::open(const Session& session) {
  auto mailbox = std::make_unique<Mailbox>();
  int ends[2];
  if (::pipe(ends) != 0) return false;
  mailbox->wake_read.reset(ends[0]);
  mailbox->wake_write.reset(ends[1]);
  for (int end : ends) {
    ::fcntl(end, F_SETFL, ::fcntl(end, F_GETFL) | O_NONBLOCK);
    ::fcntl(end, F_SETFD, FD_CLOEXEC);
  }
  const std::lock_guard lock(mutex_);
  mailboxes_[&session] = std::move(mailbox);
  return true;
}

void SharedRooms::close(const Session& session) {
  const std::lock_guard lock(mutex_);
  const auto found = mailboxes_.find(&session);
  if (found == mailboxes_.end()) return;
  leave_locked(*found->second);
  mailboxes_.erase(found);
}

SharedRooms::Mailbox* SharedRooms::find_locked(const Session& session) {
  const auto found = mailboxes_.find(&session);
  return found == mailboxes_.end() ? nullptr : found->second.get();
}

int SharedRooms::wake_fd(const Session& session) {
  const std::lock_guard lock(mutex_);
  const Mailbox* mailbox = find_locked(session);
  return mailbox != nullptr ? mailbox->wake_read.get() : -1;
}

bool SharedRooms::join(Session& member, std::string_view room) {
  const std::lock_guard lock(mutex_);
  Mailbox* mailbox = find_locked(member);
  if (mailbox == nullptr) return false;
  leave_locked(*mailbox);
  mailbox->room = room;
  rooms_[mailbox->room].push_back(mailbox);
  return true;
}

void SharedRooms::leave(Session& member) {
  const std::lock_guard lock(mutex_);
  if (Mailbox* mailbox = find_locked(member)) leave_locked(*mailbox);
}

void SharedRooms::leave_locked(Mailbox& mailbox) {
  if (mailbox.room.empty()) return;
  const auto room = rooms_.find(mailbox.room);
  std::vector<Mailbox*>& members = room->second;
  *std::find(members.begin(), members.end(), &mailbox) = members.back();
  members.pop_back();
  if (members.empty()) rooms_.erase(room);
  mailbox.room.clear();
}

void SharedRooms::publish(Session& from, std::span<const char> bytes) {
  const std::lock_guard lock(mutex_);
  const Mailbox* sender = find_locked(from);
  if (sender == nullptr || sender->room.empty()) return;
  std::vector<Mailbox*>& members = rooms_.find(sender->room)->second;
  for (size_t i = 0; i < members.size();) {
    Mailbox& member = *members[i];
    const bool was_empty = member.queued.empty();
    if (member.queued.size() + bytes.size() > max_backlog_bytes_) {
      member.evicted = true;
      evicted_.fetch_add(1, std::memory_order_relaxed);
      leave_locked(member);  // moves the last member into slot i
    } else {
      member.queued.append(bytes.data(), bytes.size());
      ++i;
    }
    // One byte in the pipe while anything waits: the member's thread wakes and takes it.
    if (was_empty || member.evicted) {
      const char wake = 1;
      [[maybe_unused]] const ssize_t n = ::write(member.wake_write.get(), &wake, 1);
    }
  }
}

bool SharedRooms::drain_wakeup(const Session& session) {
  const std::lock_guard lock(mutex_);
  Mailbox* mailbox = find_locked(session);
  if (mailbox == nullptr) return false;
  drain(mailbox->wake_read.get());
  return mailbox->evicted;
}

bool SharedRooms::take(const Session& session, std::string& out) {
  const std::lock_guard lock(mutex_);
  Mailbox* mailbox = find_locked(session);
  if (mailbox == nullptr) return false;
  drain(mailbox->wake_read.get());
  if (out.empty()) {
    out.swap(mailbox->queued);
  } else {
    out.append(mailbox->queued);
  }
  mailbox->queued.clear();
  return mailbox->evicted;
}

// ---- ChildRooms ----

bool ChildRooms::join(Session&, std::string_view room) {
  room_ = room;
  return true;
}

void ChildRooms::publish(Session&, std::span<const char> bytes) {
  if (room_.empty()) return;
  link_.post(0, room_, bytes);  // the relay sends it back too: the sender is a member
}

void ChildRooms::keep(std::span<const char> bytes) {
  if (evicted_now_) return;
  if (queued_.size() + bytes.size() > max_backlog_bytes_) return evict_now();
  queued_.append(bytes.data(), bytes.size());
}

void ChildRooms::evict_now() {
  if (evicted_now_) return;
  evicted_now_ = true;
  evicted_.fetch_add(1, std::memory_order_relaxed);
  room_.clear();
}

void ChildRooms::read_link() {
  link_.take(0, posted_);
  for (const RoomsLink::Posted& posted : posted_) {
    if (posted.room.empty()) {
      evict_now();  // the relay's notice: this member fell its backlog behind there
    } else if (!room_.empty() && posted.room == room_) {
      keep(posted.bytes);
    }
  }
}

bool ChildRooms::drain_wakeup(const Session&) {
  read_link();
  return evicted_now_;
}

bool ChildRooms::take(const Session&, std::string& out) {
  read_link();
  out.append(queued_);
  queued_.clear();
  return evicted_now_;
}

}  // namespace cb::servers
