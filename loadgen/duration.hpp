// Durations on loadgen's command line: "250us", "500ms", "10s", "2m", "1h", or a bare
// number of seconds, turned into nanoseconds. Pure functions: nothing prints or throws.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cb::loadgen {

/// Parses a non-negative duration: a decimal number (fractions allowed: "1.5s") and an
/// optional unit, one of ns, us (or µs), ms, s, m, h; no unit means seconds. Returns the
/// duration in nanoseconds (rounded to the nearest ns), or nullopt with `error` set to a
/// reason that quotes the text, e.g. "'10x' has an unknown unit 'x' (use ...)". Thread-safe.
std::optional<uint64_t> parse_duration_ns(std::string_view text, std::string& error);

/// Formats nanoseconds for people: "250us", "1.5ms", "10s", "2m30s". Thread-safe.
std::string format_duration(uint64_t duration_ns);

}  // namespace cb::loadgen
