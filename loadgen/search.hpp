// The capacity search (--slo with --search): the highest open-loop rate whose steps meet
// a latency and error target. It brackets by doubling (or halving) from a starting rate,
// bisects to a precision, and runs the bracket's two ends again so that one noisy step
// cannot decide the answer. It knows nothing of sockets: each step is a callback that
// runs loadgen once at a rate and returns its report. Never prints.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "loadgen/report.hpp"

namespace cb::loadgen {

/// A service-level objective: latency percentiles (from the intended send time) and an
/// error rate that a step must stay within.
struct Slo {
  std::vector<std::pair<double, uint64_t>> latency;  ///< (percentile, most ns), e.g. (99, 1ms)
  std::optional<double> max_error_share;             ///< errors + timeouts over requests
  std::string text;                                  ///< canonical, e.g. "p99<=1ms,errors<=1%"
};

/// Parses --slo terms: "p50=D", "p90=D", "p99=D", "p999=D" (D a duration) and
/// "errors=P%" (or a fraction), each term once, as separate values or joined by commas.
/// nullopt with `error` saying which term is wrong.
std::optional<Slo> parse_slo(const std::vector<std::string>& terms, std::string& error);

/// How a step fared against the objective and against loadgen's own checks.
struct StepOutcome {
  bool pass = false;
  std::string why;  ///< what failed ("p99 1812 µs over 1000 µs", "the server: ..."), "" on pass
};

/// Judges one step: it fails on a percentile or the error share over the objective, on
/// an achieved rate short of the offered one (the server could not keep up), or when
/// loadgen itself was the bottleneck (then the step says so: it measured loadgen).
StepOutcome judge_step(const Slo& slo, const Report& report);

/// One step of the search.
struct SearchStep {
  uint32_t number = 0;    ///< 1-based
  const char* role = "";  ///< "probe" (closed loop), "bracket", "bisect" or "confirm"
  double rate_rps = 0;    ///< offered (0 for the closed-loop probe)
  Report report;
  StepOutcome outcome;
};

struct SearchResult {
  std::vector<SearchStep> steps;
  std::optional<double>
      capacity_rps;  ///< the highest rate that passed, confirmed; none: no rate did
  std::optional<double> failing_rps;  ///< the lowest rate above it that failed
  bool interrupted = false;
  std::string note;  ///< why the search ended where it did, in words
};

/// What the search needs from the program: running a step (rate 0: the closed-loop
/// probe), returning nullopt when the step could not run; being told of each step; and
/// whether to stop (an interrupt).
struct SearchHooks {
  std::function<std::optional<Report>(double rate_rps)> run_step;
  std::function<void(const SearchStep&)> step_done;
  std::function<bool()> stop_requested;
};

/// Searches from `start_rps` (0: from half of a closed-loop probe's throughput) until the
/// bracket's width is at most `precision` (a fraction) of its lower end, within
/// `max_steps` steps.
SearchResult search_capacity(const Slo& slo, double start_rps, double precision, uint32_t max_steps,
                             const SearchHooks& hooks);

}  // namespace cb::loadgen
