// The table of the protocols loadgen speaks: one row each, the only list of them.
#include <cassert>
#include <string>
#include <vector>

#include "loadgen/protocol/client.hpp"

namespace cb::loadgen::protocol {
namespace {

constexpr std::string_view kHttpFlags[] = {"--method", "--path"};
constexpr std::string_view kWsFlags[] = {"--path", "--rooms"};

constexpr Row kRows[] = {
    {Protocol::kTcp, Transport::kStream, {}, nullptr, nullptr, make_tcp_echo_client},
    {Protocol::kUdp, Transport::kDatagram, {}, check_udp, report_udp, make_udp_client},
    {Protocol::kHttp, Transport::kStream, kHttpFlags, check_http, report_http, make_http_client},
    {Protocol::kWs, Transport::kStream, kWsFlags, check_ws, report_ws, make_ws_client},
};

bool owns(const Row& row, std::string_view flag) {
  for (std::string_view own : row.own_flags) {
    if (own == flag) return true;
  }
  return false;
}

/// The names of the protocols whose rows `pick` picks: "tcp, http and ws".
template <typename Pick>
std::string names_where(Pick pick) {
  std::vector<std::string_view> names;
  for (const Row& each : kRows) {
    if (pick(each)) names.push_back(protocol_name(each.protocol));
  }
  std::string text;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) text += i + 1 == names.size() ? " and " : ", ";
    text += names[i];
  }
  return text;
}

/// The names of the protocols that travel by `transport`.
std::string names_of(Transport transport) {
  return names_where([transport](const Row& each) { return each.transport == transport; });
}

/// The names of the protocols whose rows list `flag`: "http and ws".
std::string owners_of(std::string_view flag) {
  return names_where([flag](const Row& each) { return owns(each, flag); });
}

}  // namespace

std::span<const Row> rows() { return kRows; }

const Row& row(Protocol protocol) {
  for (const Row& each : kRows) {
    if (each.protocol == protocol) return each;
  }
  assert(!"a Protocol without a row in kRows");
  return kRows[0];
}

bool check_options(LoadOptions& options, const FlagGiven& given, std::string& error) {
  const Row& chosen = row(options.protocol);
  for (const Row& other : kRows) {
    if (other.protocol == chosen.protocol) continue;
    for (std::string_view flag : other.own_flags) {
      if (!given(flag) || owns(chosen, flag)) continue;
      error = std::string(flag) + ": applies to --protocol " + owners_of(flag) + " only";
      return false;
    }
  }
  if (chosen.check && !chosen.check(options, given, error)) return false;
  if (chosen.transport == Transport::kStream) return true;
  const std::string name(protocol_name(chosen.protocol));
  if (options.slow_clients > 0) {
    error = "--slow-clients: " + name + " has no connections to hold open (slow clients are " +
            names_of(Transport::kStream) + " only)";
    return false;
  }
  if (given("--requests-per-connection")) {
    error = "--requests-per-connection: " + name + " has no connections to reopen (" +
            names_of(Transport::kStream) + " only)";
    return false;
  }
  return true;
}

}  // namespace cb::loadgen::protocol
