// The capacity search (see search.hpp).
#include "loadgen/search.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "loadgen/duration.hpp"

namespace cb::loadgen {
namespace {

// The rates a step may offer (loadgen's --rate range).
constexpr double kMinRateRps = 0.01;
constexpr double kMaxRateRps = 100'000'000;
// Confirmation rounds: each may send the bisection back once.
constexpr int kConfirmRounds = 2;

std::string us_text(double us) {
  char text[32];
  std::snprintf(text, sizeof text, "%.0f µs", us);
  return text;
}

std::optional<double> percentile_us(const LatencySummary& latency, double percentile) {
  if (percentile == 50) return latency.p50_us;
  if (percentile == 90) return latency.p90_us;
  if (percentile == 99) return latency.p99_us;
  if (percentile == 99.9) return latency.p999_us;
  return std::nullopt;
}

const char* percentile_name(double percentile) {
  if (percentile == 50) return "p50";
  if (percentile == 90) return "p90";
  if (percentile == 99) return "p99";
  return "p999";
}

}  // namespace

std::optional<Slo> parse_slo(const std::vector<std::string>& terms, std::string& error) {
  Slo slo;
  std::vector<std::string> parts;
  for (const std::string& term : terms) {
    size_t start = 0;
    while (start <= term.size()) {
      const size_t comma = term.find(',', start);
      const std::string part =
          term.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      if (!part.empty()) parts.push_back(part);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  if (parts.empty()) {
    error = "no objective given (e.g. p99=1ms)";
    return std::nullopt;
  }
  for (const std::string& part : parts) {
    const size_t equals = part.find('=');
    const std::string name = part.substr(0, equals);
    const std::string value = equals == std::string::npos ? "" : part.substr(equals + 1);
    if (equals == std::string::npos || value.empty()) {
      error = "'" + part + "' is not NAME=VALUE (e.g. p99=1ms, errors=1%)";
      return std::nullopt;
    }
    if (name == "errors") {
      char* end = nullptr;
      double share = std::strtod(value.c_str(), &end);
      const bool percent = end != nullptr && *end == '%';
      if (end == value.c_str() || (*end != '\0' && !(percent && end[1] == '\0'))) {
        error = "'" + part + "': the error bound is a percentage (errors=1%) or a fraction";
        return std::nullopt;
      }
      if (percent) share /= 100;
      if (!(share >= 0 && share <= 1) || slo.max_error_share) {
        error = "'" + part + "': errors must be given once, from 0 to 100 %";
        return std::nullopt;
      }
      slo.max_error_share = share;
      continue;
    }
    double percentile = 0;
    if (name == "p50") {
      percentile = 50;
    } else if (name == "p90") {
      percentile = 90;
    } else if (name == "p99") {
      percentile = 99;
    } else if (name == "p999") {
      percentile = 99.9;
    } else {
      error = "'" + name + "' is not p50, p90, p99, p999 or errors";
      return std::nullopt;
    }
    std::string duration_error;
    const auto bound_ns = parse_duration_ns(value, duration_error);
    if (!bound_ns || *bound_ns == 0) {
      error = "'" + part + "': " + (bound_ns ? "the bound must be above 0" : duration_error);
      return std::nullopt;
    }
    for (const auto& [known, _] : slo.latency) {
      if (known == percentile) {
        error = "'" + name + "' is given twice";
        return std::nullopt;
      }
    }
    slo.latency.emplace_back(percentile, *bound_ns);
  }
  std::sort(slo.latency.begin(), slo.latency.end());
  for (const auto& [percentile, bound_ns] : slo.latency) {
    if (!slo.text.empty()) slo.text += ',';
    slo.text += std::string(percentile_name(percentile)) + "<=" + format_duration(bound_ns);
  }
  if (slo.max_error_share) {
    char text[32];
    std::snprintf(text, sizeof text, "errors<=%g%%", *slo.max_error_share * 100);
    if (!slo.text.empty()) slo.text += ',';
    slo.text += text;
  }
  return slo;
}

StepOutcome judge_step(const Slo& slo, const Report& report) {
  StepOutcome outcome;
  // loadgen's own limit first: such a step measured loadgen, not the server.
  if (report.verdict == Verdict::kGeneratorBound) {
    outcome.why = "loadgen fell behind (" + report.verdict_reason + ")";
    return outcome;
  }
  if (report.verdict == Verdict::kServerBound) {
    outcome.why = "the server fell behind: " + report.verdict_reason;
    return outcome;
  }
  if (!report.latency) {
    outcome.why = "no request completed";
    return outcome;
  }
  for (const auto& [percentile, bound_ns] : slo.latency) {
    const double bound_us = static_cast<double>(bound_ns) / 1e3;
    const double value_us = percentile_us(*report.latency, percentile).value_or(0);
    if (value_us > bound_us) {
      outcome.why = std::string(percentile_name(percentile)) + " " + us_text(value_us) + " over " +
                    us_text(bound_us);
      return outcome;
    }
  }
  if (slo.max_error_share) {
    const double failed = static_cast<double>(report.errors() + report.timeouts);
    const double share = failed / std::max(1.0, static_cast<double>(report.requests) + failed);
    if (share > *slo.max_error_share) {
      char text[96];
      std::snprintf(text, sizeof text, "errors and timeouts %.3g %% over %.3g %%", share * 100,
                    *slo.max_error_share * 100);
      outcome.why = text;
      return outcome;
    }
  }
  outcome.pass = true;
  return outcome;
}

namespace {

class Search {
 public:
  Search(const Slo& slo, double precision, uint32_t max_steps, const SearchHooks& hooks)
      : slo_(slo), precision_(precision), max_steps_(max_steps), hooks_(hooks) {}

  SearchResult run(double start_rps);

 private:
  /// Runs one step; nullopt when it could not run or the search must stop.
  std::optional<bool> step(const char* role, double rate_rps);
  bool budget_left() const { return result_.steps.size() < max_steps_; }
  bool narrow() const { return (*high_ - *low_) <= precision_ * *low_; }
  void bisect();

  const Slo& slo_;
  double precision_;
  uint32_t max_steps_;
  const SearchHooks& hooks_;
  SearchResult result_;
  std::optional<double> low_;   ///< highest rate that passed (its latest run)
  std::optional<double> high_;  ///< lowest rate above low_ that failed (its latest run)
  bool stopped_ = false;
};

std::optional<bool> Search::step(const char* role, double rate_rps) {
  if (stopped_ || !budget_left()) return std::nullopt;
  if (hooks_.stop_requested && hooks_.stop_requested()) {
    stopped_ = true;
    result_.interrupted = true;
    return std::nullopt;
  }
  auto report = hooks_.run_step(rate_rps);
  if (!report) {
    stopped_ = true;
    return std::nullopt;
  }
  SearchStep done;
  done.number = static_cast<uint32_t>(result_.steps.size() + 1);
  done.role = role;
  done.rate_rps = rate_rps;
  // The closed-loop probe only sets the starting rate: it is not judged.
  done.outcome = rate_rps > 0 ? judge_step(slo_, *report)
                              : StepOutcome{false, "closed-loop probe: sets the starting rate"};
  done.report = std::move(*report);
  if (done.report.interrupted) {
    // A step cut short says nothing about its rate.
    stopped_ = true;
    result_.interrupted = true;
    done.outcome = StepOutcome{false, "interrupted"};
  }
  result_.steps.push_back(done);
  if (hooks_.step_done) hooks_.step_done(result_.steps.back());
  if (stopped_) return std::nullopt;
  return done.outcome.pass;
}

void Search::bisect() {
  while (low_ && high_ && !narrow()) {
    const double middle = (*low_ + *high_) / 2;
    const auto pass = step("bisect", middle);
    if (!pass) return;
    (*pass ? low_ : high_) = middle;
  }
}

SearchResult Search::run(double start_rps) {
  double rate = start_rps;
  if (rate <= 0) {
    // No starting rate: half of what a closed loop gets, which most servers meet.
    if (!step("probe", 0)) return result_;
    rate = std::clamp(result_.steps.back().report.throughput_rps / 2, kMinRateRps, kMaxRateRps);
  }
  // Bracket: double while steps pass, halve while they fail.
  while (!low_ || !high_) {
    const auto pass = step("bracket", rate);
    if (!pass) break;
    if (*pass) {
      low_ = rate;
      if (rate >= kMaxRateRps) {
        result_.note = "every rate up to loadgen's most passed";
        break;
      }
      if (!high_) rate = std::min(rate * 2, kMaxRateRps);
    } else {
      high_ = rate;
      if (rate <= kMinRateRps) {
        result_.note = "no rate down to loadgen's least met the objective";
        break;
      }
      if (!low_) rate = std::max(rate / 2, kMinRateRps);
    }
  }
  bisect();
  // Confirm: the bracket's two ends once more. A flip sends the bisection back.
  for (int round = 0; round < kConfirmRounds && low_ && high_; ++round) {
    const double low = *low_, high = *high_;
    const auto low_again = step("confirm", low);
    if (!low_again) break;
    if (!*low_again) {
      // The best pass failed on its second run: it is not a rate the server sustains.
      high_ = low;
      low_.reset();
      for (const SearchStep& s : result_.steps) {
        if (s.outcome.pass && s.rate_rps > 0 && s.rate_rps < low) {
          low_ = std::max(low_.value_or(0), s.rate_rps);
        }
      }
      if (!low_) break;
      bisect();
      continue;
    }
    const auto high_again = step("confirm", high);
    if (!high_again) break;
    if (*high_again) {
      low_ = high;
      high_.reset();
      for (const SearchStep& s : result_.steps) {
        if (!s.outcome.pass && s.rate_rps > high)
          high_ = std::min(high_.value_or(1e300), s.rate_rps);
      }
      if (!high_) break;
      bisect();
      continue;
    }
    if (result_.note.empty()) result_.note = "both ends of the bracket confirmed by a second run";
    break;
  }
  result_.capacity_rps = low_;
  result_.failing_rps = high_;
  if (result_.note.empty()) {
    result_.note = result_.interrupted ? "interrupted"
                   : !budget_left()    ? "the step budget ran out before the bracket closed"
                                       : "the bracket's ends were not confirmed twice";
  }
  return result_;
}

}  // namespace

SearchResult search_capacity(const Slo& slo, double start_rps, double precision, uint32_t max_steps,
                             const SearchHooks& hooks) {
  Search search(slo, precision, max_steps, hooks);
  return search.run(start_rps);
}

}  // namespace cb::loadgen
