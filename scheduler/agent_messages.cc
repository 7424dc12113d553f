#include "scheduler/agent_messages.h"

#include "absl/strings/str_cat.h"
#include "common/metric_name.h"

namespace sweepd::scheduler {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

bool IdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.';
}

absl::Status CheckId(absl::string_view field, const std::string& id) {
  if (id.empty() || id.size() > kMaxIdBytes) {
    return Invalid(field, absl::StrCat("must have 1 to ", kMaxIdBytes, " bytes; got ", id.size()));
  }
  for (char c : id) {
    if (!IdChar(c)) return Invalid(field, "may hold only letters, digits, '-', '_' and '.'");
  }
  if (id[0] == '.') return Invalid(field, "must not start with '.'");
  return absl::OkStatus();
}

absl::Status CheckText(absl::string_view field, const std::string& text) {
  if (text.size() > kMaxTextBytes) {
    return Invalid(field, absl::StrCat("is ", text.size(), " bytes; the limit is ", kMaxTextBytes));
  }
  return absl::OkStatus();
}

absl::Status CheckGpus(absl::string_view field,
                       const google::protobuf::RepeatedPtrField<v1::Gpu>& gpus) {
  if (gpus.size() > kMaxGpusPerAgent) {
    return Invalid(field, absl::StrCat(gpus.size(), " entries; the limit is ", kMaxGpusPerAgent));
  }
  for (const auto& g : gpus) {
    if (g.index() < 0 || g.index() >= kMaxGpusPerAgent) {
      return Invalid(field,
                     absl::StrCat("index ", g.index(), " is outside 0..", kMaxGpusPerAgent - 1));
    }
    if (g.uuid().size() > kMaxIdBytes || g.name().size() > kMaxIdBytes) {
      return Invalid(field, "uuid and name may have at most 128 bytes");
    }
  }
  return absl::OkStatus();
}

absl::Status CheckBatch(const v1::MetricBatch& batch) {
  if (auto st = CheckId("metric_batch.trial_id", batch.trial_id()); !st.ok()) return st;
  if (batch.first_seq() < 0) {
    return Invalid("metric_batch.first_seq", absl::StrCat("must be >= 0; got ", batch.first_seq()));
  }
  if (batch.reports_size() > kMaxReportsPerBatch) {
    return absl::InvalidArgumentError(absl::StrCat("metric_batch.reports: ", batch.reports_size(),
                                                   "; the limit is ", kMaxReportsPerBatch));
  }
  for (const auto& r : batch.reports()) {
    if (r.metrics_size() > kMaxMetricsPerReport) {
      return Invalid(
          "metric_batch.reports.metrics",
          absl::StrCat(r.metrics_size(), " in one report; the limit is ", kMaxMetricsPerReport));
    }
    if (r.step() < 0) {
      return Invalid("metric_batch.reports.step", absl::StrCat("must be >= 0; got ", r.step()));
    }
    for (const auto& [name, value] : r.metrics()) {
      if (auto st = CheckMetricName(name); !st.ok()) {
        return Invalid("metric_batch.reports.metrics", st.message());
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateAgentMessage(const v1::AgentMessage& message) {
  switch (message.kind_case()) {
    case v1::AgentMessage::kRegister: {
      const auto& r = message.register_();
      if (auto st = CheckId("register.agent_id", r.agent_id()); !st.ok()) return st;
      if (r.gpus_size() == 0) {
        return Invalid("register.gpus", absl::StrCat("an agent advertises 1 to ", kMaxGpusPerAgent,
                                                     " GPUs or CPU slots"));
      }
      if (auto st = CheckGpus("register.gpus", r.gpus()); !st.ok()) return st;
      if (r.hostname().size() > 255 || r.address().size() > 255 || r.version().size() > 64) {
        return Invalid("register", "hostname and address may have at most 255 bytes, version 64");
      }
      if (r.running_trials_size() > kMaxRunningTrials || r.labels_size() > 64) {
        return Invalid("register", absl::StrCat("at most ", kMaxRunningTrials,
                                                " running trials and 64 labels"));
      }
      for (const auto& t : r.running_trials()) {
        if (auto st = CheckId("register.running_trials.trial_id", t.trial_id()); !st.ok()) {
          return st;
        }
      }
      return absl::OkStatus();
    }
    case v1::AgentMessage::kHeartbeat: {
      const auto& h = message.heartbeat();
      if (h.running_trial_ids_size() > kMaxRunningTrials) {
        return Invalid("heartbeat.running_trial_ids", "at most 4096");
      }
      return CheckGpus("heartbeat.gpus", h.gpus());
    }
    case v1::AgentMessage::kTrialStarted: {
      const auto& s = message.trial_started();
      if (auto st = CheckId("trial_started.trial_id", s.trial_id()); !st.ok()) return st;
      if (s.master_port() < 0 || s.master_port() > 65535) {
        return Invalid("trial_started.master_port",
                       absl::StrCat("must be 0 to 65535; got ", s.master_port()));
      }
      for (const auto* text :
           {&s.workdir(), &s.stdout_path(), &s.stderr_path(), &s.master_addr()}) {
        if (auto st = CheckText("trial_started", *text); !st.ok()) return st;
      }
      return absl::OkStatus();
    }
    case v1::AgentMessage::kMetricBatch:
      return CheckBatch(message.metric_batch());
    case v1::AgentMessage::kTrialExited: {
      const auto& e = message.trial_exited();
      if (auto st = CheckId("trial_exited.trial_id", e.trial_id()); !st.ok()) return st;
      if (!(e.wall_seconds() >= 0 && e.wall_seconds() < 1e9)) {
        return Invalid("trial_exited.wall_seconds",
                       absl::StrCat("must be 0 to 1e9; got ", e.wall_seconds()));
      }
      if (auto st = CheckText("trial_exited.spec_error", e.spec_error()); !st.ok()) return st;
      return CheckText("trial_exited.stderr_tail", e.stderr_tail());
    }
    case v1::AgentMessage::kDeregister:
      return CheckText("deregister.reason", message.deregister().reason());
    case v1::AgentMessage::KIND_NOT_SET:
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

}  // namespace sweepd::scheduler
