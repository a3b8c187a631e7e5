// The libuv engine: one uv_loop_t on the calling thread that serves ctx.listener until
// the stop signal fires. The libuv model is one of these loops; prefork runs one in each
// worker process and reactors one in each thread, with ServeContext::worker_index set.
#pragma once

#include <string>

#include "servers/model.hpp"

namespace cb::servers {

/// Accepts, reads and writes every connection of ctx.listener (a listening TCP socket)
/// on non-blocking sockets. Returns 0 after a clean stop, having closed every
/// connection; otherwise 1 with `error` filled. Never exits the process.
int serve_libuv_stream(const ServeContext& ctx, std::string& error);

/// serve_libuv_stream, with rooms shared by the loop's connections (LoopRooms): what a
/// session publishes is appended to every member's output at once, and written in the
/// loop's check phase, one write per member for all of a turn's messages. For a loop that serves every connection of the server (the libuv
/// model); the loops of prefork and reactors would each see part of a room.
int serve_libuv_stream_with_rooms(const ServeContext& ctx, std::string& error);

/// Answers the datagrams of ctx.listener (a bound UDP socket), with the contract of
/// serve_libuv_stream.
int serve_libuv_datagrams(const ServeContext& ctx, std::string& error);

}  // namespace cb::servers
