// libFuzzer target: loadgen's duration parser (--duration, --timeout, --warmup...).
// Whatever the text, it returns a value or an error that says why, never crashes and
// never overflows (UBSan traps on that); a value it returns can be formatted. (What
// format_duration writes is for people, "8m20s", and is not meant to parse again.)
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "loadgen/duration.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::string error;
  const auto duration_ns = cb::loadgen::parse_duration_ns(text, error);
  if (!duration_ns) {
    if (error.empty()) __builtin_trap();  // every refusal says why
    return 0;
  }
  if (cb::loadgen::format_duration(*duration_ns).empty()) __builtin_trap();
  return 0;
}
