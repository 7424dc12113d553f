#include "worker/trial_state_file.h"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace sweepd::worker {

bool SafeId(const std::string& id) {
  static const std::regex kId(R"([A-Za-z0-9][A-Za-z0-9_.-]{0,63})");
  return std::regex_match(id, kId) && id.find("..") == std::string::npos;
}

absl::Status WriteTrialState(const std::string& path, const TrialState& state) {
  const nlohmann::json json = {
      {"trial", state.trial_id},
      {"sweep", state.sweep_id},
      {"pid", state.pid},
      {"start_ticks", state.start_ticks},
      {"keep_fd", state.keep_fd},
      {"exit_file", state.exit_file},
      {"gpus", state.gpu_indices},
      {"node_rank", state.node_rank},
      {"attempt", state.attempt},
      {"socket", state.socket_path},
      {"workdir", state.workdir},
      {"metric_pattern", state.metric_pattern},
      {"client_reported", state.client_reported},
      {"cgroup", state.cgroup_dir},
      {"finished", state.finished},
      {"start_unix", state.start_unix},
  };
  const std::string tmp = path + ".tmp";
  std::ofstream out(tmp, std::ios::trunc);
  out << json.dump() << "\n";
  out.flush();
  std::error_code ec;
  if (!out) {
    std::filesystem::remove(tmp, ec);
    return absl::UnavailableError(absl::StrCat("cannot write ", tmp));
  }
  out.close();
  std::filesystem::rename(tmp, path, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot write ", path, ": ", ec.message()));
  return absl::OkStatus();
}

ReadTrialStateResult ReadTrialState(const std::string& path) {
  ReadTrialStateResult result{.state = absl::NotFoundError(absl::StrCat("cannot read ", path))};
  std::ifstream in(path);
  if (!in) return result;
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto json = nlohmann::json::parse(text, nullptr, false);
  if (!json.is_object()) {
    std::istringstream(text) >> result.pid >> result.start_ticks;  // an older agent's line
    result.state = absl::InvalidArgumentError("not a state file of this agent's format");
    return result;
  }
  // Values of the wrong type (a damaged file) read as absent, never throw.
  auto get = [&json]<typename T>(const char* key, T fallback) -> T {
    auto it = json.find(key);
    if (it == json.end()) return fallback;
    if constexpr (std::is_same_v<T, std::string>) {
      return it->is_string() ? it->template get<std::string>() : fallback;
    } else if constexpr (std::is_same_v<T, bool>) {
      return it->is_boolean() ? it->template get<bool>() : fallback;
    } else if constexpr (std::is_floating_point_v<T>) {
      return it->is_number() ? it->template get<T>() : fallback;
    } else {
      return it->is_number_integer() ? it->template get<T>() : fallback;
    }
  };
  TrialState state;
  state.pid = get("pid", pid_t{0});
  state.start_ticks = get("start_ticks", uint64_t{0});
  result.pid = state.pid;
  result.start_ticks = state.start_ticks;
  state.trial_id = get("trial", std::string());
  state.sweep_id = get("sweep", std::string());
  if (!SafeId(state.trial_id) || !SafeId(state.sweep_id)) {
    result.state = absl::InvalidArgumentError("no trial id");
    return result;
  }
  state.keep_fd = get("keep_fd", -1);
  state.exit_file = get("exit_file", std::string());
  if (auto gpus = json.find("gpus"); gpus != json.end() && gpus->is_array()) {
    for (const auto& g : *gpus) {
      if (g.is_number_integer()) state.gpu_indices.push_back(g.get<int32_t>());
    }
  }
  state.node_rank = get("node_rank", 0);
  state.attempt = get("attempt", int32_t{0});
  state.socket_path = get("socket", std::string());
  state.workdir = get("workdir", std::string());
  state.metric_pattern = get("metric_pattern", std::string());
  state.client_reported = get("client_reported", false);
  state.cgroup_dir = get("cgroup", std::string());
  state.finished = get("finished", false);
  state.start_unix = get("start_unix", 0.0);
  result.state = std::move(state);
  return result;
}

}  // namespace sweepd::worker
