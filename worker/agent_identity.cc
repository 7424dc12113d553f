#include "worker/agent_identity.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace sweepd::worker {
namespace {

constexpr char kIdentityFile[] = "identity.json";

// FNV-1a: stable across builds and machines (std::hash is not), so the derived id of a workdir
// never changes under an agent.
uint64_t Fnv1a(const std::string& text) {
  uint64_t hash = 1469598103934665603ull;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  return hash;
}

absl::StatusOr<std::string> RandomKey() {
  unsigned char bytes[16];
  FILE* urandom = std::fopen("/dev/urandom", "rb");
  if (urandom == nullptr || std::fread(bytes, 1, sizeof(bytes), urandom) != sizeof(bytes)) {
    if (urandom != nullptr) std::fclose(urandom);
    return absl::InternalError("cannot read /dev/urandom for the agent's key");
  }
  std::fclose(urandom);
  std::string key;
  for (unsigned char b : bytes) key += absl::StrFormat("%02x", b);
  return key;
}

// Writes the file whole or not at all (a crash mid-write leaves the old one).
absl::Status WriteIdentity(const std::filesystem::path& path, const AgentIdentity& identity) {
  const nlohmann::json doc = {{"agent_id", identity.agent_id},
                              {"key", identity.key},
                              {"hostname", identity.hostname},
                              {"workdir", identity.workdir}};
  const std::string tmp = path.string() + ".tmp";
  {
    // The key is a credential of sorts: readable by this user only.
    const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return absl::InternalError(absl::StrCat("cannot write ", tmp));
    const std::string text =
        doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    const bool written = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    close(fd);
    if (!written) return absl::InternalError(absl::StrCat("cannot write ", tmp));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot write ", path.string()));
  }
  return absl::OkStatus();
}

std::optional<AgentIdentity> ReadIdentity(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json doc = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object() || !doc.contains("agent_id") || !doc["agent_id"].is_string() ||
      !doc.contains("key") || !doc["key"].is_string()) {
    return std::nullopt;
  }
  AgentIdentity identity{.agent_id = doc["agent_id"].get<std::string>(),
                         .key = doc["key"].get<std::string>(),
                         .hostname = doc.value("hostname", ""),
                         .workdir = doc.value("workdir", "")};
  if (!ValidAgentId(identity.agent_id) || identity.key.size() != 32) return std::nullopt;
  return identity;
}

}  // namespace

bool ValidAgentId(const std::string& id) {
  static const std::regex kId(R"([A-Za-z0-9][A-Za-z0-9_.-]{0,63})");
  // Not the names of the files beside the agents' state folders in .sweep-agent/.
  return std::regex_match(id, kId) && id.find("..") == std::string::npos && id != "lock" &&
         id.rfind("identity.json", 0) != 0;
}

std::string DerivedAgentId(const std::string& hostname, const std::string& absolute_workdir) {
  // Only the id's own characters from the hostname (they are nearly always all of it).
  std::string host;
  for (char c : hostname) {
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') host += c;
    if (c == '.') break;  // the short name: gpu01.lab.example -> gpu01
  }
  if (host.empty() || !std::isalnum(static_cast<unsigned char>(host[0]))) host = "agent" + host;
  host = host.substr(0, 56);
  return absl::StrFormat("%s-%06x", host, Fnv1a(absolute_workdir) & 0xffffff);
}

absl::StatusOr<WorkdirClaim> ClaimWorkdir(const std::string& workdir,
                                          const std::string& requested_id,
                                          const std::string& hostname) {
  if (!requested_id.empty() && !ValidAgentId(requested_id)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--agent-id: \"", requested_id,
                     "\" may hold only letters, digits, '.', '_' and '-' (1 to 64, no \"..\")"));
  }
  std::error_code ec;
  const std::filesystem::path dir = std::filesystem::path(workdir) / ".sweep-agent";
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(absl::StrCat("--workdir ", workdir, ": ", ec.message()));
  }
  const std::string absolute = std::filesystem::weakly_canonical(workdir, ec).string();
  const std::string started =
      absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::Now(), absl::UTCTimeZone());
  auto lock = FileLock::Acquire((dir / "lock").string(), absl::StrCat("sweep-agent pid ", getpid(),
                                                                      " (started ", started, ")"));
  if (!lock.ok()) {
    if (lock.status().code() != absl::StatusCode::kFailedPrecondition) return lock.status();
    return absl::FailedPreconditionError(absl::StrCat(
        "--workdir ", workdir, " is ", lock.status().message(),
        ": each agent on a host needs its own --workdir (its trials, logs and identity live "
        "there)"));
  }
  const std::filesystem::path identity_path = dir / kIdentityFile;
  const std::optional<AgentIdentity> kept = ReadIdentity(identity_path);
  AgentIdentity identity;
  // Kept, and made here: the same agent. Made elsewhere (a copied workdir, a cloned image):
  // another agent, which must not pass for the original at sweepd.
  if (kept.has_value() && kept->hostname == hostname && kept->workdir == absolute) {
    identity = *kept;
  } else {
    auto key = RandomKey();
    if (!key.ok()) return key.status();
    identity.key = *key;
    identity.hostname = hostname;
    identity.workdir = absolute;
    if (!kept.has_value() && std::filesystem::is_directory(dir / hostname) &&
        ValidAgentId(hostname)) {
      // A workdir of an older sweep-agent, whose default id was the hostname: keep it, so the
      // trials it left running (state in .sweep-agent/<hostname>/) are taken over.
      identity.agent_id = hostname;
    }
  }
  if (!requested_id.empty()) {
    identity.agent_id = requested_id;
  } else if (identity.agent_id.empty()) {
    identity.agent_id = DerivedAgentId(hostname, absolute);
  }
  if (!kept.has_value() || kept->agent_id != identity.agent_id || kept->key != identity.key ||
      kept->hostname != identity.hostname || kept->workdir != identity.workdir) {
    if (auto st = WriteIdentity(identity_path, identity); !st.ok()) return st;
  }
  (void)lock->SetHolder(absl::StrCat("sweep-agent pid ", getpid(), " (agent id ", identity.agent_id,
                                     ", started ", started, ")"));
  return WorkdirClaim{std::move(*lock), std::move(identity)};
}

}  // namespace sweepd::worker
