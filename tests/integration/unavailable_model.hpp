// A model the machine cannot run (io_uring on a kernel that forbids it) makes
// echo-server exit 2 with one line naming the model, before it announces anything.
// Its tests are then skipped with that line as the reason, never silently passed;
// any other failure to start stays a failure.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace cb::test {

/// Given the error start_server() filled for `model`, returns the server's own line
/// ("echo-server: io_uring: not available on this kernel: ...") when the server exited
/// with code 2 and said the model is unavailable; nullopt for any other failure.
inline std::optional<std::string> unavailable_reason(const std::string& start_error,
                                                     std::string_view model) {
  if (start_error.find("(exit code 2)") == std::string::npos) return std::nullopt;
  // start_server quotes what the program printed on stderr as "stderr: '...'".
  constexpr std::string_view kStderr = "stderr: '";
  const size_t quoted = start_error.find(kStderr);
  if (quoted == std::string::npos) return std::nullopt;
  const std::string prefix = "echo-server: " + std::string(model) + ": ";
  const size_t line = start_error.find(prefix, quoted + kStderr.size());
  if (line == std::string::npos) return std::nullopt;
  const size_t end = start_error.find('\n', line);
  std::string reason = start_error.substr(line, end == std::string::npos ? end : end - line);
  if (reason.find("not available") == std::string::npos) return std::nullopt;
  return reason;
}

/// Why this build cannot test `model` at all, or nullopt. None today: every model runs
/// under every sanitizer. (Under ThreadSanitizer the select model once could not stop:
/// neither GCC's nor clang's TSan intercepts select(), and TSan holds a signal handler
/// back until the thread enters a call it intercepts. The servers now take SIGTERM in
/// a thread of their own with sigwait(), so no handler is involved.)
inline std::optional<std::string> untestable_in_this_build(
    [[maybe_unused]] std::string_view model) {
  return std::nullopt;
}

}  // namespace cb::test
