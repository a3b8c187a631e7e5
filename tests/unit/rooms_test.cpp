// The rooms engines keep for a relaying protocol (servers/io/rooms.hpp), apart from any
// protocol: LoopRooms (one loop walks its members, evicts one past the backlog, hands
// on to other loops), SharedRooms (a mailbox per member, woken through a pipe, under
// one lock), ChildRooms (a fork child's one member, its mail from the relay), LoopHub
// (posts between the loops of a process) and the relay between processes
// (ProcessLink frames through a Relay: to every worker but the sender for prefork's
// workers, to every member and a notice for one that falls behind for fork's).
#include "servers/io/rooms.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <string>
#include <vector>

namespace cb::servers {
namespace {

// A session that only collects what it is given.
class Member final : public Session {
 public:
  Reply on_read(std::span<const char>) override { return {}; }
  bool evicted = false;
  void evict() override {
    evicted = true;
    Session::evict();
  }
};

std::span<const char> bytes(std::string_view text) { return {text.data(), text.size()}; }

bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1;
}

TEST(LoopRooms, WalksTheRoomEvictsPastTheBacklogAndForwards) {
  std::atomic<uint64_t> evicted{0};
  LoopRooms rooms(/*max_backlog_bytes=*/10, evicted, /*track_touched=*/true);
  Member a, b, c, outsider;
  ASSERT_TRUE(rooms.join(a, "r"));
  ASSERT_TRUE(rooms.join(b, "r"));
  ASSERT_TRUE(rooms.join(c, "r"));
  ASSERT_TRUE(rooms.join(outsider, "other"));
  std::vector<std::string> forwarded;
  rooms.set_forward([&](std::string_view room, std::span<const char> data) {
    forwarded.push_back(std::string(room) + ":" + std::string(data.data(), data.size()));
  });
  rooms.publish(a, bytes("1234"));
  EXPECT_EQ(a.output(), "1234");
  EXPECT_EQ(b.output(), "1234");
  EXPECT_EQ(outsider.output(), "");
  EXPECT_EQ(forwarded, std::vector<std::string>{"r:1234"});
  std::vector<Session*> touched;
  rooms.take_touched(touched);
  EXPECT_EQ(touched.size(), 3u);
  // a and b drain; c does not, and 8 bytes would take it past 10.
  a.clear_output(0);
  b.clear_output(0);
  rooms.publish(a, bytes("5678abcd"));
  EXPECT_TRUE(c.evicted);
  EXPECT_EQ(evicted.load(), 1u);
  EXPECT_EQ(c.output(), "1234");
  EXPECT_EQ(b.output(), "5678abcd");
  // c is out of the room: nothing more reaches it, and another loop's post is
  // delivered here without being forwarded again.
  b.clear_output(0);
  rooms.deliver("r", bytes("x"));
  EXPECT_EQ(b.output(), "x");
  EXPECT_EQ(c.output(), "1234");
  EXPECT_EQ(forwarded.size(), 2u);
  // A member that leaves is forgotten by take_touched too.
  rooms.leave(b);
  rooms.take_touched(touched);
  for (Session* session : touched) EXPECT_NE(session, &b);
}

TEST(SharedRooms, MailboxesAreWokenTakenAndBounded) {
  std::atomic<uint64_t> evicted{0};
  SharedRooms rooms(/*max_backlog_bytes=*/10, evicted);
  Member a, b;
  EXPECT_FALSE(rooms.join(a, "r")) << "no mailbox yet";
  ASSERT_TRUE(rooms.open(a));
  ASSERT_TRUE(rooms.open(b));
  ASSERT_TRUE(rooms.join(a, "r"));
  ASSERT_TRUE(rooms.join(b, "r"));
  rooms.publish(a, bytes("hi"));
  rooms.publish(b, bytes("yo"));
  EXPECT_TRUE(readable(rooms.wake_fd(b)));
  std::string out;
  EXPECT_FALSE(rooms.take(b, out));
  EXPECT_EQ(out, "hiyo");
  EXPECT_FALSE(readable(rooms.wake_fd(b)));
  // a never takes: past 10 bytes it is evicted, woken, and takes what it had.
  rooms.publish(b, bytes("12345"));
  rooms.publish(b, bytes("67890"));
  EXPECT_EQ(evicted.load(), 1u);
  EXPECT_TRUE(readable(rooms.wake_fd(a)));
  EXPECT_TRUE(rooms.drain_wakeup(a));
  EXPECT_FALSE(readable(rooms.wake_fd(a)));
  out.clear();
  EXPECT_TRUE(rooms.take(a, out));
  EXPECT_EQ(out, "hiyo12345");
  out.clear();
  EXPECT_FALSE(rooms.take(b, out));
  EXPECT_EQ(out, "1234567890");
  rooms.close(a);
  rooms.close(b);
  EXPECT_EQ(rooms.wake_fd(a), -1);
}

TEST(ChildRooms, KeepsItsRoomsMailFromTheLinkAndSendsItsOwnThere) {
  std::atomic<uint64_t> evicted{0};
  int ends[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, ends), 0);
  const net::Fd relay_end(ends[0]);
  ChildRooms rooms(ends[1], /*max_backlog_bytes=*/10, evicted);
  Member me;
  ASSERT_TRUE(rooms.open(me));
  ASSERT_TRUE(rooms.join(me, "r"));
  rooms.publish(me, bytes("mine"));
  // What it published went to the relay, and is not kept here: the relay sends the
  // member's own copy back with everyone else's.
  char sent[64];
  const ssize_t n = ::recv(relay_end.get(), sent, sizeof sent, 0);
  ASSERT_GT(n, 0);
  EXPECT_EQ(relay_frame_size(std::string_view(sent, static_cast<size_t>(n))),
            static_cast<size_t>(n));
  // What the relay sends: one frame for another room, two for this one.
  std::string frames;
  relay_frame(frames, "other", bytes("no"));
  relay_frame(frames, "r", bytes("mine"));
  relay_frame(frames, "r", bytes("yes"));
  ASSERT_EQ(::send(relay_end.get(), frames.data(), frames.size(), 0),
            static_cast<ssize_t>(frames.size()));
  EXPECT_TRUE(readable(rooms.wake_fd(me)));
  std::string out;
  EXPECT_FALSE(rooms.take(me, out));
  EXPECT_EQ(out, "mineyes");
  // Past the backlog: evicted, counted, and nothing more kept.
  frames.clear();
  relay_frame(frames, "r", bytes("123456"));
  relay_frame(frames, "r", bytes("789012"));
  ASSERT_EQ(::send(relay_end.get(), frames.data(), frames.size(), 0),
            static_cast<ssize_t>(frames.size()));
  out.clear();
  EXPECT_TRUE(rooms.take(me, out));
  EXPECT_EQ(out, "123456");
  EXPECT_EQ(evicted.load(), 1u);
}

TEST(ChildRooms, TheRelaysNoticeEvictsTheMemberOnce) {
  std::atomic<uint64_t> evicted{0};
  int ends[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, ends), 0);
  const net::Fd relay_end(ends[0]);
  ChildRooms rooms(ends[1], /*max_backlog_bytes=*/1000, evicted);
  Member me;
  ASSERT_TRUE(rooms.open(me));
  ASSERT_TRUE(rooms.join(me, "r"));
  std::string frames;
  relay_frame(frames, "r", bytes("last"));
  relay_frame(frames, {}, {});  // the notice
  relay_frame(frames, {}, {});
  ASSERT_EQ(::send(relay_end.get(), frames.data(), frames.size(), 0),
            static_cast<ssize_t>(frames.size()));
  std::string out;
  EXPECT_TRUE(rooms.take(me, out));
  EXPECT_EQ(out, "last");
  EXPECT_EQ(evicted.load(), 1u);
}

TEST(LoopHub, PostsReachEveryOtherLoopAndWakeItOnce) {
  LoopHub hub(3);
  int woken[3] = {0, 0, 0};
  for (size_t i = 0; i < 3; ++i) hub.attach(i, [&woken, i] { ++woken[i]; });
  hub.post(0, "r", bytes("one"));
  hub.post(0, "r", bytes("two"));
  EXPECT_EQ(woken[0], 0);
  EXPECT_EQ(woken[1], 1);
  std::vector<RoomsLink::Posted> posted;
  hub.take(1, posted);
  ASSERT_EQ(posted.size(), 2u);
  EXPECT_EQ(posted[0].room, "r");
  EXPECT_EQ(posted[0].bytes, "one");
  EXPECT_EQ(posted[1].bytes, "two");
  hub.take(0, posted);
  EXPECT_TRUE(posted.empty());
  hub.detach(2);
  hub.post(0, "r", bytes("three"));
  hub.take(2, posted);
  EXPECT_TRUE(posted.empty()) << "a detached loop gets nothing";
}

TEST(Relay, FramesGoToEveryWorkerButTheSenderInOrder) {
  std::atomic<uint64_t> dropped{0};
  Relay relay(dropped, Relay::Ends::kWorkers);
  std::vector<net::Fd> worker_ends;
  for (size_t i = 0; i < 3; ++i) {
    int ends[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, ends), 0);
    relay.set(i, net::Fd(ends[0]));
    worker_ends.emplace_back(ends[1]);
  }
  ProcessLink link0(worker_ends[0].get()), link1(worker_ends[1].get()),
      link2(worker_ends[2].get());
  const std::string big(100'000, 'b');  // more than one read
  link0.post(0, "room", bytes("first"));
  link0.post(0, "room", bytes(big));
  link1.post(1, "other", bytes("from 1"));
  for (int round = 0; round < 20; ++round) {
    std::vector<pollfd> fds;
    const size_t first = relay.add_pollfds(fds);
    ::poll(fds.data(), fds.size(), 10);
    relay.serve(fds, first);
  }
  std::vector<RoomsLink::Posted> posted;
  link2.take(2, posted);
  ASSERT_EQ(posted.size(), 3u);
  EXPECT_EQ(posted[0].room, "room");
  EXPECT_EQ(posted[0].bytes, "first");
  EXPECT_EQ(posted[1].bytes, big);
  EXPECT_EQ(posted[2].room, "other");
  link1.take(1, posted);
  ASSERT_EQ(posted.size(), 2u);
  link0.take(0, posted);
  ASSERT_EQ(posted.size(), 1u);
  EXPECT_EQ(posted[0].bytes, "from 1");
  EXPECT_EQ(dropped.load(), 0u);
}

// fork's relay: every frame to every member, the sender included; a member that falls
// its backlog behind gets what was queued for it, then the notice, and nothing more.
TEST(Relay, MembersGetEveryFrameAndOneFallingBehindIsNoticed) {
  std::atomic<uint64_t> dropped{0};
  constexpr size_t kBacklog = 64 * 1024;
  Relay relay(dropped, Relay::Ends::kMembers, kBacklog);
  std::vector<net::Fd> member_ends;
  for (size_t i = 0; i < 2; ++i) {
    int ends[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, ends), 0);
    relay.set(i, net::Fd(ends[0]));
    member_ends.emplace_back(ends[1]);
  }
  ProcessLink reader(member_ends[0].get()), idle(member_ends[1].get());
  const std::string message(1000, 'm');
  std::vector<RoomsLink::Posted> posted, got;
  size_t sent = 0;
  // Member 0 posts and reads; member 1 never reads, so its socket fills, then the
  // relay's queue for it passes the backlog.
  for (int round = 0; round < 2000 && sent < 5000; ++round) {
    for (int i = 0; i < 10; ++i, ++sent) reader.post(0, "r", bytes(message));
    std::vector<pollfd> fds;
    const size_t first = relay.add_pollfds(fds);
    ::poll(fds.data(), fds.size(), 0);
    relay.serve(fds, first);
    reader.take(0, posted);
    got.insert(got.end(), posted.begin(), posted.end());
  }
  for (int round = 0; round < 50 && got.size() < sent; ++round) {
    std::vector<pollfd> fds;
    const size_t first = relay.add_pollfds(fds);
    ::poll(fds.data(), fds.size(), 10);
    relay.serve(fds, first);
    reader.take(0, posted);
    got.insert(got.end(), posted.begin(), posted.end());
  }
  EXPECT_EQ(got.size(), sent) << "the sender gets its own copy of each";
  // The idle member, reading at last: a prefix of the messages, then one notice.
  size_t messages = 0, notices = 0;
  for (int round = 0; round < 200; ++round) {
    std::vector<pollfd> fds;
    const size_t first = relay.add_pollfds(fds);
    ::poll(fds.data(), fds.size(), 1);
    relay.serve(fds, first);
    idle.take(1, posted);
    for (const auto& p : posted) {
      EXPECT_EQ(notices, 0u) << "nothing after the notice";
      if (p.room.empty()) {
        ++notices;
      } else {
        ++messages;
      }
    }
  }
  EXPECT_EQ(notices, 1u);
  EXPECT_GT(messages, 0u);
  EXPECT_LT(messages, sent);
  EXPECT_EQ(dropped.load(), 0u);
}

TEST(Relay, FrameSizeNeedsTheWholeFrame) {
  std::string frame;
  relay_frame(frame, "r", bytes("abc"));
  EXPECT_EQ(frame.size(), 4u + 1 + 1 + 3);
  EXPECT_EQ(relay_frame_size(frame), frame.size());
  EXPECT_EQ(relay_frame_size(std::string_view(frame).substr(0, frame.size() - 1)), 0u);
  EXPECT_EQ(relay_frame_size("ab"), 0u);
}

}  // namespace
}  // namespace cb::servers
