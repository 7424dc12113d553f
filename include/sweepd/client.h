#pragma once

// sweepd's header-only C++ reporting client: the same calls as the Python one.
//
//   #include <sweepd/client.h>
//   sweepd::Client client;                        // reads SWEEP_* from the environment
//   double lr = std::stod(client.Param("optimizer.lr", "0.01"));
//   for (int epoch = 0; epoch < epochs; ++epoch) {
//     if (!client.Report(epoch, {{"val_loss", loss}, {"acc", acc}})) break;  // pruned
//   }
//   client.Finish();
//
// Outside a sweep (SWEEP_SOCKET unset) Param() falls back to `--name=value` arguments given to
// the constructor and Report() only logs to stderr, so the program also runs by hand.
// POSIX only; no dependencies. Not thread-safe: one Client per thread (or a lock around it).

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace sweepd {

class Client {
 public:
  Client() : Client(0, nullptr) {}
  // argc/argv: where Param() looks outside a sweep.
  Client(int argc, char** argv) {
    if (const char* s = std::getenv("SWEEP_SOCKET")) socket_path_ = s;
    if (const char* t = std::getenv("SWEEP_TRIAL_ID")) trial_id_ = t;
    if (const char* p = std::getenv("SWEEP_PARAMS_JSON")) {
      params_ = ParseFlatObject(p);
    } else {
      for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg.rfind("--", 0) != 0) continue;
        const size_t eq = arg.find('=');
        if (eq != std::string::npos) {
          params_[arg.substr(2, eq - 2)] = arg.substr(eq + 1);
        } else if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) {
          params_[arg.substr(2)] = argv[++i];
        } else {
          params_[arg.substr(2)] = "true";
        }
      }
    }
  }
  ~Client() { Close(); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool in_sweep() const { return !socket_path_.empty(); }

  // A parameter by its flattened name (`optimizer.lr`): strings without their quotes, numbers
  // and booleans as written. `fallback` when absent.
  std::string Param(const std::string& name, const std::string& fallback = "") const {
    auto it = params_.find(name);
    return it == params_.end() ? fallback : it->second;
  }
  const std::map<std::string, std::string>& Params() const { return params_; }

  // Reports metrics at `step`; false means stop (pruned or canceled). Throws std::runtime_error
  // when the agent refuses the request or cannot be reached.
  bool Report(long long step, const std::vector<std::pair<std::string, double>>& metrics) {
    if (!in_sweep()) {
      std::string line = "sweepd: step=" + std::to_string(step);
      for (const auto& [name, value] : metrics) line += " " + name + "=" + Number(value);
      std::fprintf(stderr, "%s\n", line.c_str());
      return true;
    }
    std::string request = "{\"op\":\"report\",\"step\":" + std::to_string(step) +
                          ",\"trial\":" + Quote(trial_id_) + ",\"metrics\":{";
    for (size_t i = 0; i < metrics.size(); ++i) {
      request += (i ? "," : "") + Quote(metrics[i].first) + ":" + JsonNumber(metrics[i].second);
    }
    request += "}}";
    return !Exchange(request);
  }

  bool ShouldStop() const { return stopped_; }
  const std::string& StopReason() const { return stop_reason_; }

  // The trial's checkpoint folder ($SWEEP_CHECKPOINT_DIR, kept across attempts; "" outside a
  // sweep) and the step a retry resumes from ($SWEEP_RESUME_STEP; -1: start from the beginning).
  static std::string CheckpointDir() {
    const char* d = std::getenv("SWEEP_CHECKPOINT_DIR");
    return d == nullptr ? "" : d;
  }
  static long long ResumeStep() {
    const char* s = std::getenv("SWEEP_RESUME_STEP");
    return s == nullptr || *s == '\0' ? -1 : std::atoll(s);
  }
  // Tells sweepd the checkpoint at `step` is complete on disk (write it, fsync, rename first):
  // a retry resumes from it. False means stop, as Report.
  bool CheckpointSaved(long long step) {
    if (!in_sweep()) return true;
    return !Exchange("{\"op\":\"checkpoint\",\"step\":" + std::to_string(step) +
                     ",\"trial\":" + Quote(trial_id_) + "}");
  }
  // The agent is stopping (preempted): save a checkpoint and exit; the trial runs again.
  bool Preempted() const { return preempted_; }

  // Final metrics (optional), then closes the connection.
  void Finish(const std::vector<std::pair<std::string, double>>& metrics = {}) {
    if (in_sweep()) {
      std::string request = "{\"op\":\"finish\",\"trial\":" + Quote(trial_id_);
      if (!metrics.empty()) {
        request += ",\"metrics\":{";
        for (size_t i = 0; i < metrics.size(); ++i) {
          request += (i ? "," : "") + Quote(metrics[i].first) + ":" + JsonNumber(metrics[i].second);
        }
        request += "}";
      }
      Exchange(request + "}");
    }
    Close();
  }

 private:
  static std::string Number(double v) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.17g", v);
    return buf;
  }
  static std::string JsonNumber(double v) {
    if (std::isnan(v)) return "\"NaN\"";
    if (std::isinf(v)) return v > 0 ? "\"Infinity\"" : "\"-Infinity\"";
    return Number(v);
  }
  static std::string Quote(const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
      if (c == '"' || c == '\\') out += '\\';
      if (static_cast<unsigned char>(c) < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof(buf), "\\u%04x", c);
        out += buf;
        continue;
      }
      out += c;
    }
    return out + "\"";
  }

  // A flat JSON object of scalars (what SWEEP_PARAMS_JSON holds for scalar parameters);
  // nested values are kept as their JSON text.
  static std::map<std::string, std::string> ParseFlatObject(const std::string& text) {
    std::map<std::string, std::string> out;
    size_t i = text.find('{');
    if (i == std::string::npos) return out;
    ++i;
    auto skip = [&] {
      while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    };
    auto string_at = [&]() {
      std::string s;
      ++i;  // opening quote
      while (i < text.size() && text[i] != '"') {
        if (text[i] == '\\' && i + 1 < text.size()) ++i;
        s += text[i++];
      }
      ++i;
      return s;
    };
    while (i < text.size()) {
      skip();
      if (text[i] != '"') break;
      std::string key = string_at();
      skip();
      ++i;  // ':'
      skip();
      std::string value;
      if (text[i] == '"') {
        value = string_at();
      } else {
        int depth = 0;
        const size_t start = i;
        while (i < text.size() && (depth > 0 || (text[i] != ',' && text[i] != '}'))) {
          if (text[i] == '[' || text[i] == '{') ++depth;
          if (text[i] == ']' || text[i] == '}') --depth;
          ++i;
        }
        value = text.substr(start, i - start);
        while (!value.empty() && std::isspace(static_cast<unsigned char>(value.back()))) {
          value.pop_back();
        }
      }
      out[key] = value;
      skip();
      if (i < text.size() && text[i] == ',') ++i;
    }
    return out;
  }

  // Seconds to keep trying when the agent is away ($SWEEPD_RECONNECT_SECONDS, default 300): a
  // restarted agent takes its trials over and listens on the same socket again.
  static double ReconnectSeconds() {
    const char* env = std::getenv("SWEEPD_RECONNECT_SECONDS");
    if (env == nullptr || *env == '\0') return 300;
    char* end = nullptr;
    const double seconds = std::strtod(env, &end);
    return end != env && seconds >= 0 ? seconds : 300;
  }

  // Sends one request line and reads the reply; true when the reply says stop. If the agent
  // is away, tries again (backoff 0.1 s doubling to 2 s) for ReconnectSeconds().
  bool Exchange(const std::string& request) {
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                              std::chrono::duration<double>(ReconnectSeconds()));
    auto delay = std::chrono::milliseconds(100);
    for (int attempt = 0;; ++attempt) {
      // The first retry is immediate and always made: the connection may just be stale.
      if (attempt >= 2) {
        if (std::chrono::steady_clock::now() >= deadline) break;
        std::this_thread::sleep_for(delay);
        delay = std::min(delay * 2, std::chrono::milliseconds(2000));
      }
      if (fd_ < 0 && !Connect()) continue;
      const std::string line = request + "\n";
      if (send(fd_, line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size())) {
        Close();
        continue;
      }
      std::string reply;
      bool complete = false;
      char c;
      while (true) {
        const ssize_t n = recv(fd_, &c, 1, 0);
        if (n < 0 && errno == EINTR) continue;  // a signal (a profiler's), not the agent
        if (n != 1) break;
        if (c == '\n') {
          complete = true;
          break;
        }
        reply += c;
      }
      if (!complete || reply.empty()) {  // the agent went away mid-answer
        Close();
        continue;
      }
      if (reply.find("\"error\"") != std::string::npos) {
        throw std::runtime_error("sweepd: " + reply);
      }
      if (reply.find("\"stop\"") != std::string::npos) {
        stopped_ = true;
        if (reply.find("\"preempted\":true") != std::string::npos) preempted_ = true;
        const size_t r = reply.find("\"reason\":\"");
        if (r != std::string::npos) {
          stop_reason_ = reply.substr(r + 10, reply.find('"', r + 10) - (r + 10));
        }
      }
      return stopped_;
    }
    throw std::runtime_error("sweepd: cannot reach the sweep agent at " + socket_path_);
  }

  bool Connect() {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, socket_path_.c_str(), sizeof(addr.sun_path) - 1);
    if (fd_ < 0 || connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      Close();
      return false;
    }
    return true;
  }

  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

  std::string socket_path_;
  std::string trial_id_;
  std::map<std::string, std::string> params_;
  int fd_ = -1;
  bool stopped_ = false;
  bool preempted_ = false;
  std::string stop_reason_;
};

}  // namespace sweepd
