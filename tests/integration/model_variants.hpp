// The models as the integration suites run them: every model in the registry, and
// those that take a mode flag (--epoll-level, --reuseport) once more in that mode, so
// the other mode is held to the same rules. A variant's test name gets a suffix.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "servers/model.hpp"

namespace cb::test {

// A model as a suite runs it: its name and the flags it is started with.
struct Variant {
  std::string model;
  std::vector<std::string> flags;
};

inline const std::pair<servers::ModelFlag, std::pair<const char*, const char*>> kModeFlags[] = {
    {servers::kEpollLevelFlag, {"_level", "--epoll-level"}},
    {servers::kReusePortFlag, {"_reuseport", "--reuseport"}},
};

/// Every variant's name: the model's, with a mode suffix for a mode variant.
inline std::vector<std::string> model_names() {
  std::vector<std::string> names;
  for (const auto& model : servers::all_models()) {
    names.emplace_back(model.name);
    for (const auto& [flag, suffix_and_option] : kModeFlags)
      if (model.flags & flag) names.push_back(std::string(model.name) + suffix_and_option.first);
  }
  return names;
}

/// The model and flags a name from model_names() stands for.
inline Variant variant_of(const std::string& name) {
  for (const auto& [flag, suffix_and_option] : kModeFlags) {
    const std::string suffix = suffix_and_option.first;
    if (name.size() > suffix.size() && name.ends_with(suffix))
      return {name.substr(0, name.size() - suffix.size()), {suffix_and_option.second}};
  }
  return {name, {}};
}

/// Models that serve one connection at a time: with one client being served, the
/// next ones wait in the backlog, so tests that keep a connection open while
/// opening another must close the first one first.
inline bool serves_one_at_a_time(const std::string& model) { return model == "iterative"; }

}  // namespace cb::test
