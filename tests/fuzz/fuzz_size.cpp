// libFuzzer target: sizes on the command lines (echo-server --buffer-size and
// --max-request-memory, loadgen's sizes), which both programs parse with CLI11's
// AsSizeValue followed by a range check. Whatever the text, it is a number or an
// error message, never a crash, an exception escaping or undefined behaviour.
#include <CLI/CLI.hpp>
#include <cstddef>
#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string value(reinterpret_cast<const char*>(data), size);
  CLI::App app{"fuzz"};
  uint64_t bytes = 0;
  app.add_option("--size", bytes)
      ->transform(CLI::AsSizeValue(false))
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 50));
  try {
    app.parse(std::vector<std::string>{value, "--size"});
  } catch (const CLI::ParseError&) {
    // A refusal is an answer.
  }
  return 0;
}
