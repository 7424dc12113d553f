#include "scheduler/simulator.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <queue>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/param_space.h"
#include "common/status_macros.h"
#include "scheduler/pruning/pruner.h"
#include "scheduler/search/param_sampler.h"
#include "scheduler/search/pbt.h"
#include "scheduler/search/search_method.h"

namespace sweepd::scheduler {
namespace {

// A parameter's position in its range, in [0, 1] (log scale for log laws, index for lists).
double Position(const v1::Parameter& leaf, const std::string& value_json) {
  auto v = nlohmann::json::parse(value_json, nullptr, false);
  if (leaf.distribution() == v1::CATEGORICAL || leaf.distribution() == v1::CONSTANT) {
    for (int i = 0; i < leaf.values_json_size(); ++i) {
      if (leaf.values_json(i) == value_json) {
        return leaf.values_json_size() == 1 ? 0.5 : i / (leaf.values_json_size() - 1.0);
      }
    }
    return 0.5;
  }
  if (!v.is_number()) return 0.5;
  double x = v.get<double>();
  double lo = leaf.min(), hi = leaf.max();
  switch (leaf.distribution()) {
    case v1::LOG_UNIFORM_VALUES:
    case v1::Q_LOG_UNIFORM_VALUES:
    case v1::INV_LOG_UNIFORM_VALUES:
      x = std::log(std::max(x, 1e-300));
      lo = std::log(lo);
      hi = std::log(hi);
      break;
    case v1::LOG_UNIFORM:
    case v1::Q_LOG_UNIFORM:
      x = std::log(std::max(x, 1e-300));
      break;
    case v1::NORMAL:
    case v1::Q_NORMAL:
      lo = leaf.mu() - 3 * leaf.sigma();
      hi = leaf.mu() + 3 * leaf.sigma();
      break;
    case v1::BETA:
    case v1::Q_BETA:
      lo = 0;
      hi = 1;
      break;
    default:
      break;
  }
  if (hi <= lo) return 0.5;
  return std::clamp((x - lo) / (hi - lo), 0.0, 1.0);
}

class SyntheticSource final : public CurveSource {
 public:
  SyntheticSource(const v1::SweepSpec& spec, std::string family, uint64_t seed, int64_t steps)
      : spec_(spec),
        leaves_(LeafParameters(spec_)),
        family_(std::move(family)),
        seed_(seed),
        steps_(steps) {}

  double Value(const std::map<std::string, std::string>& params, int64_t step) const override {
    double q = 0;
    uint64_t h = seed_;
    for (const auto* leaf : leaves_) {
      auto it = params.find(leaf->path());
      if (it == params.end()) continue;
      const double d = Position(*leaf, it->second) - 0.3;
      q += d * d;
      for (char c : it->second) h = SplitMix64(h ^ static_cast<uint64_t>(c));
    }
    const double t = static_cast<double>(step);
    double value = q + 1.0 / (1.0 + t);
    if (family_ == "noisy") {
      std::mt19937_64 rng(SplitMix64(h ^ static_cast<uint64_t>(step)));
      value += std::normal_distribution<double>(0, 0.05)(rng);
    } else if (family_ == "crossing") {
      // Half the configurations (by hash) learn slowly but end up to 0.5 better.
      if (h % 2 == 0) value = q - 0.5 + 3.0 / (1.0 + 0.1 * t);
    }
    return spec_.metric().goal() == v1::GOAL_MAXIMIZE ? -value : value;
  }
  int64_t Steps() const override { return steps_; }

 private:
  const v1::SweepSpec spec_;
  std::vector<const v1::Parameter*> leaves_;
  std::string family_;
  uint64_t seed_;
  int64_t steps_;
};

class TableSource final : public CurveSource {
 public:
  double Value(const std::map<std::string, std::string>& params, int64_t step) const override {
    // The nearest trial: fewest differing parameters, then closest numbers.
    const Curve* best = nullptr;
    double best_distance = INFINITY;
    for (const auto& curve : curves_) {
      double distance = 0;
      for (const auto& [name, value] : curve.params) {
        auto it = params.find(name);
        if (it == params.end()) continue;
        double a = 0, b = 0;
        if (absl::SimpleAtod(it->second, &a) && absl::SimpleAtod(value, &b)) {
          distance += std::fabs(a - b) / (std::fabs(a) + std::fabs(b) + 1e-12);
        } else {
          distance += (it->second == value || it->second == "\"" + value + "\"") ? 0 : 1;
        }
      }
      if (distance < best_distance) {
        best_distance = distance;
        best = &curve;
      }
    }
    if (best == nullptr || best->values.empty()) return NAN;
    const size_t i = std::min(best->values.size() - 1, static_cast<size_t>(step));
    return best->values[i];
  }
  int64_t Steps() const override { return steps_; }

  struct Curve {
    std::map<std::string, std::string> params;
    std::vector<double> values;
  };
  std::vector<Curve> curves_;
  int64_t steps_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<CurveSource>> SyntheticCurves(const v1::SweepSpec& spec,
                                                             const std::string& family,
                                                             uint64_t seed, int64_t steps) {
  if (family != "rank-preserving" && family != "noisy" && family != "crossing") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--synthetic: '", family, "' is not a family; one of rank-preserving, noisy, crossing"));
  }
  if (steps < 1 || steps > 1'000'000) {
    return absl::InvalidArgumentError("--steps: must be 1 to 1000000");
  }
  return std::unique_ptr<CurveSource>(std::make_unique<SyntheticSource>(spec, family, seed, steps));
}

absl::StatusOr<std::unique_ptr<CurveSource>> CsvCurves(const std::string& text) {
  std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipWhitespace());
  if (lines.size() < 2) return absl::InvalidArgumentError("curves: need a header and rows");
  std::vector<std::string> header = absl::StrSplit(lines[0], ',');
  for (auto& h : header) h = std::string(absl::StripAsciiWhitespace(h));
  if (header.size() < 3 || header[header.size() - 2] != "step" || header.back() != "value") {
    return absl::InvalidArgumentError(
        "curves: the header must be `param1,...,step,value` (the last two columns step, value)");
  }
  auto source = std::make_unique<TableSource>();
  std::map<std::map<std::string, std::string>, std::map<int64_t, double>> by_trial;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::vector<std::string> cells = absl::StrSplit(lines[i], ',');
    if (cells.size() != header.size()) {
      return absl::InvalidArgumentError(absl::StrCat("curves: line ", i + 1, " has ", cells.size(),
                                                     " cells; the header has ", header.size()));
    }
    std::map<std::string, std::string> params;
    for (size_t c = 0; c + 2 < header.size(); ++c) {
      params[header[c]] = std::string(absl::StripAsciiWhitespace(cells[c]));
    }
    int64_t step = 0;
    double value = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(cells[cells.size() - 2]), &step) ||
        !absl::SimpleAtod(absl::StripAsciiWhitespace(cells.back()), &value) || step < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "curves: line ", i + 1, ": step must be a whole number >= 0 and value a number"));
    }
    by_trial[params][step] = value;
  }
  for (auto& [params, steps] : by_trial) {
    TableSource::Curve curve{.params = params};
    for (const auto& [step, value] : steps) curve.values.push_back(value);
    source->steps_ = std::max<int64_t>(source->steps_, static_cast<int64_t>(curve.values.size()));
    source->curves_.push_back(std::move(curve));
  }
  return std::unique_ptr<CurveSource>(std::move(source));
}

absl::StatusOr<SimulationResult> Simulate(const v1::SweepSpec& spec, const CurveSource& curves,
                                          const SimulationOptions& options) {
  if (options.workers < 1 || options.workers > 100'000) {
    return absl::InvalidArgumentError("--workers: must be 1 to 100000");
  }
  ASSIGN_OR_RETURN(auto search, CreateSearchMethod(spec));
  std::unique_ptr<pruning::Pruner> pruner;
  if (!options.disable_pruning) {
    ASSIGN_OR_RETURN(pruner, pruning::CreatePruner(spec));
  }
  int64_t max_trials = options.max_trials;
  if (spec.run_cap() > 0) max_trials = std::min(max_trials, spec.run_cap());
  if (spec.budget().max_trials() > 0) max_trials = std::min(max_trials, spec.budget().max_trials());
  const bool maximize = spec.metric().goal() == v1::GOAL_MAXIMIZE;
  const double gpus =
      std::max(1, spec.resources().gpus_per_node()) * std::max(1, spec.resources().nodes());

  struct Running {
    int64_t trial;
    std::map<std::string, std::string> params;
    int64_t step = 0;
  };
  // Method pbt: a copy goes on from its parent's last step with its own parameters' curve (the
  // synthetic curves have no other state to inherit), on the replaced member's worker, at once.
  // disable_pruning: the same population, never exploited (random search of population_size).
  const auto* pbt = options.disable_pruning
                        ? nullptr
                        : dynamic_cast<const PopulationBasedTraining*>(search.get());
  struct Member {
    int64_t origin = -1;     // the step it started from (-1: the first generation)
    int64_t last_step = -1;  // its last report
    bool replaced = false;
    bool running = false;
    std::optional<double> score;  // at its last decision
  };
  std::vector<Member> members;
  // (time the next step finishes, worker)
  using Event = std::pair<double, int>;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> events;
  std::vector<std::optional<Running>> workers(static_cast<size_t>(options.workers));
  // ASHA with promotion: trials paused at a rung (checkpointed at their last step).
  std::map<int64_t, Running> paused;
  auto is_paused = [&](int64_t trial) { return paused.contains(trial); };
  std::vector<TrialRecord> history;
  SimulationResult result;
  std::optional<double> best;
  double gpu_seconds = 0;
  double now = 0;

  auto start_trial = [&](int w) -> bool {
    if (pruner && pruner->Promotes()) {
      // ASHA's get_job: promote before starting anything new; it resumes after its checkpoint.
      if (auto next = pruner->NextPromotion(is_paused)) {
        pruner->Promoted(*next);
        Running r = std::move(paused.at(*next));
        paused.erase(*next);
        ++r.step;
        history[static_cast<size_t>(r.trial)].state = v1::TRIAL_STATE_RUNNING;
        workers[static_cast<size_t>(w)] = std::move(r);
        events.push({now + options.seconds_per_step, w});
        ++result.promotions;
        return true;
      }
    }
    if (static_cast<int64_t>(history.size()) >= max_trials) return false;
    auto params = search->Propose(history);
    if (!params.ok()) return false;
    Running r{.trial = static_cast<int64_t>(history.size())};
    for (const auto& p : *params) r.params[p.name()] = p.value_json();
    history.push_back(TrialRecord{.params = *params, .state = v1::TRIAL_STATE_RUNNING});
    members.push_back({.running = true});
    workers[static_cast<size_t>(w)] = std::move(r);
    events.push({now + options.seconds_per_step, w});
    ++result.trials;
    return true;
  };
  for (int w = 0; w < options.workers; ++w) {
    if (!start_trial(w)) break;
  }
  while (!events.empty()) {
    const auto [time, w] = events.top();
    events.pop();
    now = time;
    Running& r = *workers[static_cast<size_t>(w)];
    gpu_seconds += gpus * options.seconds_per_step;
    const double value = curves.Value(r.params, r.step);
    TrialRecord& record = history[static_cast<size_t>(r.trial)];
    record.value = value;
    record.last_step = r.step;
    if (!best || pruning::Score(value, maximize) < pruning::Score(*best, maximize)) {
      best = value;
      result.best_params = r.params;
      result.best_over_time.emplace_back(gpu_seconds / 3600, value);
    }
    if (pbt != nullptr) {
      Member& member = members[static_cast<size_t>(r.trial)];
      const int64_t previous = member.last_step;
      member.last_step = r.step;
      if (pbt->DecisionDue(member.origin, previous, r.step) && r.step + 1 < curves.Steps()) {
        member.score = value;
        std::vector<PbtMember> population;
        for (size_t t = 0; t < history.size(); ++t) {
          if (members[t].replaced || !members[t].running || !members[t].score) continue;
          population.push_back({.trial = static_cast<int64_t>(t),
                                .score = pruning::Score(*members[t].score, maximize),
                                .can_be_source = members[t].last_step >= 0});
        }
        const uint64_t salt =
            SplitMix64(spec.seed() ^ SplitMix64(static_cast<uint64_t>(r.trial) * 1'000'003u +
                                                static_cast<uint64_t>(r.step)));
        if (auto source = pbt->ExploitSource(r.trial, population, salt)) {
          const auto s = static_cast<size_t>(*source);
          const ParamSet params = pbt->Explore(history[s].params, SplitMix64(salt));
          member.replaced = true;
          member.running = false;
          record.state = v1::TRIAL_STATE_PRUNED;
          ++result.pruned;
          ++result.pbt_copies;
          // Checkpointed at every step here: the copy goes on after the source's last one.
          Running copy{.trial = static_cast<int64_t>(history.size()),
                       .step = members[s].last_step + 1};
          for (const auto& p : params) copy.params[p.name()] = p.value_json();
          history.push_back(
              TrialRecord{.params = params, .state = v1::TRIAL_STATE_RUNNING, .pbt_copy = true});
          members.push_back(
              {.origin = members[s].last_step, .last_step = members[s].last_step, .running = true});
          r = std::move(copy);
          events.push({now + options.seconds_per_step, w});
          continue;
        }
      }
    }
    bool stop = false;
    bool pause = false;
    if (pruner) {
      const auto d = pruner->OnReport({.trial = r.trial,
                                       .index = r.step,
                                       .resource = static_cast<double>(r.step),
                                       .value = value},
                                      true);
      stop = d.stop;
      // Paused unless it is the trial the freed worker would promote anyway (as sweepd does).
      if (d.pause) {
        pause = pruner->NextPromotion([&](int64_t t) { return t == r.trial || is_paused(t); }) !=
                r.trial;
        if (!pause) pruner->Promoted(r.trial);  // goes on where it is
      }
    }
    const bool done = r.step + 1 >= curves.Steps();
    if (pause && !done) {
      record.state = v1::TRIAL_STATE_PAUSED;
      paused.emplace(r.trial, std::move(r));
      workers[static_cast<size_t>(w)].reset();
      start_trial(w);
      // A worker freed now may also start what waited for promotion.
      for (int other = 0; other < options.workers; ++other) {
        if (!workers[static_cast<size_t>(other)]) start_trial(other);
      }
      continue;
    }
    if (stop || done) {
      record.state = stop ? v1::TRIAL_STATE_PRUNED : v1::TRIAL_STATE_COMPLETED;
      if (pbt != nullptr) members[static_cast<size_t>(r.trial)].running = false;
      if (stop) ++result.pruned;
      if (pruner) pruner->OnTrialEnd(r.trial, record.state);
      workers[static_cast<size_t>(w)].reset();
      start_trial(w);
      continue;
    }
    ++r.step;
    events.push({now + options.seconds_per_step, w});
  }
  // Never promoted: they end where they paused, as pruned.
  for (const auto& [trial, r] : paused) {
    history[static_cast<size_t>(trial)].state = v1::TRIAL_STATE_PRUNED;
    ++result.pruned;
  }
  result.gpu_hours = gpu_seconds / 3600;
  result.simulated_hours = now / 3600;
  result.best_value = best.value_or(NAN);
  return result;
}

}  // namespace sweepd::scheduler
