// Running the engine once (see measure.hpp).
#include "loadgen/cli/measure.hpp"

#include <pthread.h>
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

#include "loadgen/cli/cli.hpp"
#include "loadgen/server_sampler.hpp"

namespace cb::loadgen::cli {
namespace {

void print_progress(const ProgressSnapshot& p) {
  char line[256];
  if (p.total_s > 0) {
    std::snprintf(line, sizeof line,
                  "loadgen: %-8s %6.1f/%.1f s  %10.0f req/s  errors %llu  timeouts %llu  "
                  "connections %llu\n",
                  p.phase, p.elapsed_s, p.total_s, p.last_second_rps,
                  static_cast<unsigned long long>(p.errors),
                  static_cast<unsigned long long>(p.timeouts),
                  static_cast<unsigned long long>(p.established));
  } else {
    std::snprintf(line, sizeof line, "loadgen: %s: %llu connections open, errors %llu\n", p.phase,
                  static_cast<unsigned long long>(p.established),
                  static_cast<unsigned long long>(p.errors));
  }
  std::fputs(line, stderr);
  std::fflush(stderr);
}

/// The sampler's reading now, as a --timeseries row takes it.
ServerReading reading(ServerSampler& sampler) {
  const auto now = sampler.current();
  if (!now) return {};
  return ServerReading{true, now->first, now->second};
}

}  // namespace

SignalThread::SignalThread() {
  sigemptyset(&signals_);
  sigaddset(&signals_, SIGINT);
  sigaddset(&signals_, SIGTERM);
  sigaddset(&signals_, kQuitSignal);
  // Blocked before any other thread exists, so that every thread inherits the mask.
  ::pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
}

void SignalThread::start() {
  thread_ = std::thread([this] {
    int count = 0;
    for (;;) {
      int signo = 0;
      if (::sigwait(&signals_, &signo) != 0 || signo == kQuitSignal) return;
      received_.store(signo);
      if (++count > 1) {
        std::fputs("loadgen: interrupted again: exiting without a report\n", stderr);
        std::_Exit(128 + signo);
      }
      std::fputs("loadgen: interrupted: ending the window now (again to quit at once)\n", stderr);
      interrupter_.interrupt();
    }
  });
}

int SignalThread::stop() {
  if (thread_.joinable()) {
    ::pthread_kill(thread_.native_handle(), kQuitSignal);
    thread_.join();
  }
  const int signo = received_.load();
  return signo == 0 ? 0 : 128 + signo;
}

Measurement Measurer::measure(const LoadOptions& options) {
  Measurement out;
  std::unique_ptr<ServerSampler> sampler;
  if (server_pid) {
    sampler = std::make_unique<ServerSampler>(static_cast<pid_t>(*server_pid), cgroup);
  }
  RunHooks hooks;
  hooks.start_at = start_at;
  hooks.window_started = [&] {
    timespec now{};
    ::clock_gettime(CLOCK_REALTIME, &now);
    out.window_start_real_ns = int64_t{now.tv_sec} * 1'000'000'000 + now.tv_nsec;
    if (!sampler) return;
    sampler->start();
    if (options.interval_ns > 0) out.server_at_window_start = reading(*sampler);
  };
  if (options.interval_ns > 0) {
    hooks.interval_ended = [&](size_t index) {
      out.server_by_interval.resize(index + 1);
      if (sampler) out.server_by_interval[index] = reading(*sampler);
    };
  }
  hooks.window_ended = [&] {
    if (sampler) sampler->stop();
  };
  if (progress) hooks.progress = print_progress;
  try {
    out.result = run_engine(options, hooks, out.error, &signals.interrupter());
  } catch (const std::exception& e) {
    out.result.reset();
    out.error = std::string("internal error: ") + e.what();
  }
  if (sampler) sampler->stop();
  if (!out.result) {
    out.exit_code = 1;
    return out;
  }
  if (!out.result->reached) {
    out.exit_code = kUnreachable;
    out.error = out.result->unreachable_reason;
    return out;
  }
  if (out.result->interrupted && !out.result->window_started) {
    out.error = "interrupted before the measured window began: nothing to report";
    return out;
  }
  std::optional<ServerCost> cost;
  if (sampler) cost = sampler->result();
  out.report = make_report(options, *out.result, label, server_pid, cost);
  return out;
}

}  // namespace cb::loadgen::cli
