#include "common/spec_format.h"

#include <yaml-cpp/yaml.h>

#include "common/param_space.h"
#include "common/spec_parser.h"

namespace sweepd {
namespace {

using Json = nlohmann::ordered_json;

Json ParametersToJson(const google::protobuf::RepeatedPtrField<v1::Parameter>& params) {
  Json out = Json::object();
  for (const auto& p : params) {
    Json def = Json::object();
    if (p.parameters_size() > 0) {
      def["parameters"] = ParametersToJson(p.parameters());
      out[p.name()] = std::move(def);
      continue;
    }
    def["distribution"] = std::string(DistributionName(p.distribution()));
    auto number = [&](double v) { return p.integer() ? Json(static_cast<int64_t>(v)) : Json(v); };
    switch (p.distribution()) {
      case v1::CONSTANT:
        def["value"] = Json::parse(p.values_json(0));
        break;
      case v1::CATEGORICAL: {
        Json values = Json::array();
        for (const auto& v : p.values_json()) values.push_back(Json::parse(v));
        def["values"] = std::move(values);
        if (p.probabilities_size() > 0) {
          def["probabilities"] =
              Json(std::vector<double>(p.probabilities().begin(), p.probabilities().end()));
        }
        break;
      }
      case v1::NORMAL:
      case v1::LOG_NORMAL:
      case v1::Q_NORMAL:
      case v1::Q_LOG_NORMAL:
        def["mu"] = p.mu();
        def["sigma"] = p.sigma();
        break;
      case v1::BETA:
      case v1::Q_BETA:
        def["a"] = p.a();
        def["b"] = p.b();
        break;
      case v1::INT_UNIFORM:
        def["min"] = static_cast<int64_t>(p.min());
        def["max"] = static_cast<int64_t>(p.max());
        break;
      default:
        def["min"] = p.min();
        def["max"] = p.max();
        break;
    }
    if (IsQuantised(p.distribution())) def["q"] = number(p.q());
    out[p.name()] = std::move(def);
  }
  return out;
}

// Emits strings that YAML would read as another type (`"32"`, `"true"`) double-quoted, so the
// output parses back to the same values.
bool NeedsQuotes(const std::string& s) {
  if (s.empty()) return true;
  YAML::Node probe;
  try {
    probe = YAML::Load(s);
  } catch (const YAML::Exception&) {
    return true;
  }
  if (!probe.IsScalar() || probe.Scalar() != s) return true;
  static const char* const kSpecial[] = {"true",  "false", "True", "False", "TRUE",
                                         "FALSE", "null",  "Null", "NULL",  "~"};
  for (const char* word : kSpecial) {
    if (s == word) return true;
  }
  const char c = s[0];
  return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.';
}

void Emit(YAML::Emitter& out, const Json& v) {
  switch (v.type()) {
    case Json::value_t::object:
      out << YAML::BeginMap;
      for (const auto& [key, item] : v.items()) {
        out << YAML::Key << key << YAML::Value;
        Emit(out, item);
      }
      out << YAML::EndMap;
      break;
    case Json::value_t::array:
      out << YAML::BeginSeq;
      for (const auto& item : v) Emit(out, item);
      out << YAML::EndSeq;
      break;
    case Json::value_t::string: {
      const auto& s = v.get_ref<const std::string&>();
      if (NeedsQuotes(s)) out << YAML::DoubleQuoted;
      out << s;
      break;
    }
    case Json::value_t::null:
      out << YAML::Null;
      break;
    default:
      out << v.dump();  // numbers and booleans print as JSON does, which YAML reads back
      break;
  }
}

}  // namespace

Json SpecToJson(const v1::SweepSpec& spec) {
  Json out = Json::object();
  if (!spec.name().empty()) out["name"] = spec.name();
  if (!spec.description().empty()) out["description"] = spec.description();
  if (!spec.project().empty()) out["project"] = spec.project();
  if (!spec.entity().empty()) out["entity"] = spec.entity();
  if (!spec.program().empty()) out["program"] = spec.program();
  out["method"] = std::string(SearchMethodName(spec.method()));
  if (spec.has_metric()) {
    Json metric = {{"name", spec.metric().name()},
                   {"goal", spec.metric().goal() == v1::GOAL_MAXIMIZE ? "maximize" : "minimize"}};
    if (spec.metric().has_target()) metric["target"] = spec.metric().target();
    if (!spec.metric().impute().empty()) metric["impute"] = spec.metric().impute();
    if (!spec.metric().impute_while_running().empty()) {
      metric["impute_while_running"] = spec.metric().impute_while_running();
    }
    out["metric"] = std::move(metric);
  }
  out["parameters"] = ParametersToJson(spec.parameters());
  out["command"] = Json(std::vector<std::string>(spec.command().begin(), spec.command().end()));
  if (spec.launcher() == v1::LAUNCHER_TORCHRUN) out["launcher"] = "torchrun";
  if (spec.run_in_trial_dir()) out["working_dir"] = "trial";
  if (spec.has_early_terminate()) {
    const auto& et = spec.early_terminate();
    Json j = {{"type", et.type()}};
    if (et.has_min_iter()) j["min_iter"] = et.min_iter();
    if (et.has_max_iter()) j["max_iter"] = et.max_iter();
    if (et.has_s()) j["s"] = et.s();
    j["eta"] = et.eta();
    j["strict"] = et.strict();
    out["early_terminate"] = std::move(j);
    if (et.period_seconds() > 0) out["early_terminate_period"] = et.period_seconds();
  }
  if (spec.run_cap() > 0) out["run_cap"] = spec.run_cap();
  // sweepd's own keys, defaults filled in.
  if (spec.has_pruner()) {
    const auto& p = spec.pruner();
    Json j = {{"type", std::string(PrunerTypeName(p.type()))}};
    switch (p.type()) {
      case v1::Pruner::ASHA:
      case v1::Pruner::HYPERBAND:
        j["resource"] = p.resource();
        j["min_resource"] = p.min_resource();
        if (p.max_resource() > 0) j["max_resource"] = p.max_resource();
        j["reduction_factor"] = p.reduction_factor();
        if (p.type() == v1::Pruner::ASHA) {
          j["min_early_stopping_rate"] = p.min_early_stopping_rate();
        } else if (p.brackets() > 0) {
          j["brackets"] = p.brackets();
        }
        if (p.promotion()) j["mode"] = "promotion";
        break;
      case v1::Pruner::MEDIAN:
      case v1::Pruner::PERCENTILE:
        j["resource"] = p.resource();
        if (p.type() == v1::Pruner::PERCENTILE) j["percentile"] = p.percentile();
        j["n_startup_trials"] = p.n_startup_trials();
        j["n_warmup_steps"] = p.n_warmup_steps();
        j["interval_steps"] = p.interval_steps();
        j["n_min_trials"] = p.n_min_trials();
        break;
      case v1::Pruner::THRESHOLD:
        j["resource"] = p.resource();
        if (p.has_lower()) j["lower"] = p.lower();
        if (p.has_upper()) j["upper"] = p.upper();
        j["n_warmup_steps"] = p.n_warmup_steps();
        j["interval_steps"] = p.interval_steps();
        break;
      default:
        break;
    }
    out["pruner"] = std::move(j);
  }
  if (spec.parallelism() > 0) out["parallelism"] = spec.parallelism();
  out["resources"] = {{"gpus_per_node", spec.resources().gpus_per_node()},
                      {"nodes", spec.resources().nodes()}};
  if (spec.has_budget()) {
    Json b = Json::object();
    if (spec.budget().gpu_hours() > 0) b["gpu_hours"] = spec.budget().gpu_hours();
    if (spec.budget().max_trials() > 0) b["max_trials"] = spec.budget().max_trials();
    out["budget"] = std::move(b);
  }
  if (spec.has_checkpoint()) {
    Json c = Json::object();
    if (!spec.checkpoint().dir().empty()) c["dir"] = spec.checkpoint().dir();
    if (spec.checkpoint().keep_best() > 0) c["keep_best"] = spec.checkpoint().keep_best();
    if (spec.checkpoint().delete_pruned_after_hours() > 0) {
      c["delete_pruned_after_hours"] = spec.checkpoint().delete_pruned_after_hours();
    }
    out["checkpoint"] = std::move(c);
  }
  if (spec.method() == v1::SEARCH_METHOD_PBT) {
    const v1::Pbt& pbt = spec.pbt();
    Json p = {{"population_size", pbt.population_size()},
              {"interval", pbt.interval()},
              {"quantile", pbt.quantile()},
              {"resample_probability", pbt.resample_probability()},
              {"perturb_factors",
               std::vector<double>(pbt.perturb_factors().begin(), pbt.perturb_factors().end())}};
    if (pbt.hyperparameters_size() > 0) {
      p["hyperparameters"] =
          std::vector<std::string>(pbt.hyperparameters().begin(), pbt.hyperparameters().end());
    }
    out["pbt"] = std::move(p);
  }
  out["seed"] = spec.seed();
  out["max_failures"] = spec.max_failures();
  out["max_retries"] = spec.max_retries();
  if (!spec.metric_pattern().empty()) out["metric_pattern"] = spec.metric_pattern();
  out["search"] = {{"n_startup_trials", spec.search().n_startup_trials()},
                   {"n_ei_candidates", spec.search().n_ei_candidates()},
                   {"multivariate", spec.search().multivariate()},
                   {"gamma", spec.search().gamma()},
                   {"prior_weight", spec.search().prior_weight()},
                   {"bandwidth_factor", spec.search().bandwidth_factor()},
                   {"clip_exponent", spec.search().clip_exponent()}};
  return out;
}

std::string JsonToYaml(const Json& value) {
  YAML::Emitter emitter;
  Emit(emitter, value);
  return std::string(emitter.c_str()) + "\n";
}

}  // namespace sweepd
