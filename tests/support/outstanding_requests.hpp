// What loadgen's http connection is to its response reader, for the tests that drive the
// reader alone (tests/unit/http_response_test.cpp, tests/fuzz/fuzz_http_response.cpp): a
// number of requests outstanding, and every status the reader hands it, in order.
#pragma once

#include <cstddef>
#include <vector>

#include "loadgen/protocol/http_response.hpp"

namespace cb::test {

class OutstandingRequests final : public loadgen::protocol::HttpResponseListener {
 public:
  explicit OutstandingRequests(size_t asked) : asked_(asked) {}

  /// Takes the response while a request is outstanding; refuses it (unasked) after that.
  bool response_ended(unsigned status) override {
    if (statuses.size() == asked_) return false;
    statuses.push_back(status);
    return true;
  }

  std::vector<unsigned> statuses;  ///< of the responses taken

 private:
  size_t asked_;
};

}  // namespace cb::test
