// Parsing and printing of the durations loadgen's flags take (see duration.hpp).
#include "loadgen/duration.hpp"

#include <array>
#include <cmath>
#include <cstdio>

namespace cb::loadgen {
namespace {

struct Unit {
  std::string_view suffix;
  double ns;
};

// Longest suffixes first where one ends another ("ms" before "s").
constexpr std::array<Unit, 7> kUnits{{
    {"ns", 1.0},
    {"us", 1e3},
    {"\xC2\xB5s", 1e3},  // µs in UTF-8
    {"ms", 1e6},
    {"s", 1e9},
    {"m", 60e9},
    {"h", 3600e9},
}};

constexpr std::string_view kUnitHelp = "use ns, us, ms, s, m or h; a bare number is seconds";

bool is_digit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

std::optional<uint64_t> parse_duration_ns(std::string_view text, std::string& error) {
  std::string quoted(1, '\'');
  quoted.append(text).push_back('\'');
  if (text.empty()) {
    error = "an empty duration (" + std::string(kUnitHelp) + ")";
    return std::nullopt;
  }
  // The number: digits with at most one decimal point. Parsed by hand so that locale,
  // signs, exponents, "inf" and "nan" never sneak in.
  size_t pos = 0;
  double whole = 0;
  double scale = 1;
  bool any_digit = false;
  bool point = false;
  for (; pos < text.size(); ++pos) {
    const char c = text[pos];
    if (is_digit(c)) {
      any_digit = true;
      if (point) {
        scale /= 10;
        whole += (c - '0') * scale;
      } else {
        whole = whole * 10 + (c - '0');
      }
    } else if (c == '.' && !point) {
      point = true;
    } else {
      break;
    }
  }
  if (!any_digit) {
    error =
        quoted + " is not a duration: it must start with a number (" + std::string(kUnitHelp) + ")";
    return std::nullopt;
  }
  const std::string_view suffix = text.substr(pos);
  double unit_ns = 1e9;
  if (!suffix.empty()) {
    bool known = false;
    for (const Unit& unit : kUnits) {
      if (suffix == unit.suffix) {
        unit_ns = unit.ns;
        known = true;
        break;
      }
    }
    if (!known) {
      error = quoted + " has an unknown unit '" + std::string(suffix) + "' (" +
              std::string(kUnitHelp) + ")";
      return std::nullopt;
    }
  }
  const double ns = std::round(whole * unit_ns);
  // A year is far beyond any run and far below uint64_t's range.
  constexpr double kMaxNs = 365.0 * 24 * 3600e9;
  if (!std::isfinite(ns) || ns > kMaxNs) {
    error = quoted + " is too long (at most a year)";
    return std::nullopt;
  }
  return static_cast<uint64_t>(ns);
}

std::string format_duration(uint64_t duration_ns) {
  char text[64];
  const double ns = static_cast<double>(duration_ns);
  if (duration_ns == 0) return "0s";
  if (duration_ns < 1'000) {
    std::snprintf(text, sizeof text, "%lluns", static_cast<unsigned long long>(duration_ns));
  } else if (duration_ns < 1'000'000) {
    std::snprintf(text, sizeof text, "%gus", ns / 1e3);
  } else if (duration_ns < 1'000'000'000) {
    std::snprintf(text, sizeof text, "%gms", ns / 1e6);
  } else if (duration_ns < 60'000'000'000ULL || duration_ns % 1'000'000'000ULL != 0) {
    std::snprintf(text, sizeof text, "%gs", ns / 1e9);
  } else {
    const uint64_t s = duration_ns / 1'000'000'000ULL;
    if (s % 3600 == 0) {
      std::snprintf(text, sizeof text, "%lluh", static_cast<unsigned long long>(s / 3600));
    } else if (s % 60 == 0) {
      std::snprintf(text, sizeof text, "%llum", static_cast<unsigned long long>(s / 60));
    } else {
      std::snprintf(text, sizeof text, "%llum%llus", static_cast<unsigned long long>(s / 60),
                    static_cast<unsigned long long>(s % 60));
    }
  }
  return text;
}

}  // namespace cb::loadgen
