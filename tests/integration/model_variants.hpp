// The models as the integration suites run them: every model in the registry, and
// those that take a mode flag (a switch row with a variant suffix: --epoll-level) once
// more in that mode, and those that take a flag of named modes (--accept) once more in
// each mode but the default, so every mode is held to the same rules. A variant's test
// name gets the switch row's suffix, or "_" and the mode's name ("prefork_exclusive").
// What a test expects of a model it reads from the model's traits in its registry row,
// never from its name.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "servers/model.hpp"

namespace cb::test {

// A model as a suite runs it: its name and the flags it is started with.
struct Variant {
  std::string model;
  std::vector<std::string> flags;
};

/// The mode variants one flag row makes: (suffix, the flags that select it).
inline std::vector<std::pair<std::string, std::vector<std::string>>> flag_variants(
    const servers::FlagSpec& spec) {
  std::vector<std::pair<std::string, std::vector<std::string>>> variants;
  if (!spec.variant_suffix.empty())
    variants.push_back({std::string(spec.variant_suffix), {std::string(spec.name)}});
  for (size_t i = 1; i < spec.choices.size(); ++i) {
    // Appended rather than "_" + string: GCC 12 warns (-Wrestrict) on that form falsely.
    std::string suffix = "_";
    suffix.append(spec.choices[i]);
    variants.push_back({suffix, {std::string(spec.name), std::string(spec.choices[i])}});
  }
  return variants;
}

/// Every variant's name: the model's, with a mode suffix for a mode variant. With
/// `datagrams`, the models that have a datagram form, and only the modes that change it.
inline std::vector<std::string> model_names(bool datagrams = false) {
  std::vector<std::string> names;
  for (const auto& model : servers::all_models()) {
    if (datagrams && model.serve_datagrams == nullptr) continue;
    names.emplace_back(model.name);
    for (const auto& spec : servers::model_flags()) {
      if (!model.takes(spec.flag)) continue;
      if (datagrams && !spec.datagram_variant) continue;
      for (const auto& [suffix, flags] : flag_variants(spec))
        names.push_back(std::string(model.name) + suffix);
    }
  }
  return names;
}

/// The model and flags a name from model_names() stands for.
inline Variant variant_of(const std::string& name) {
  for (const auto& spec : servers::model_flags()) {
    for (const auto& [suffix, flags] : flag_variants(spec)) {
      if (name.size() <= suffix.size() || !name.ends_with(suffix)) continue;
      std::string model = name.substr(0, name.size() - suffix.size());
      if (servers::find_model(model) != nullptr) return {std::move(model), flags};
    }
  }
  return {name, {}};
}

/// The registry row of a variant's model (a name from model_names(), or a model's).
inline const servers::Model& model_of(const std::string& name) {
  return *servers::find_model(variant_of(name).model);
}

/// The names of the models whose row satisfies `wanted`, in registry order.
template <typename Predicate>
std::vector<std::string> models_where(Predicate wanted) {
  std::vector<std::string> names;
  for (const auto& model : servers::all_models())
    if (wanted(model)) names.emplace_back(model.name);
  return names;
}

/// Models that serve one connection at a time (their row's trait): with one client
/// being served, the next ones wait in the backlog, so tests that keep a connection open
/// while opening another must close the first one first.
inline bool serves_one_at_a_time(const std::string& model) {
  return model_of(model).clients == servers::Clients::kOneAtATime;
}

}  // namespace cb::test
