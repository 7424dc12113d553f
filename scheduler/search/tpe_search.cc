#include "scheduler/search/tpe_search.h"

#include <algorithm>
#include <boost/math/distributions/normal.hpp>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "common/param_space.h"
#include "scheduler/search/param_sampler.h"

namespace sweepd {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

double Phi(double z) { return 0.5 * std::erfc(-z / std::sqrt(2.0)); }

double PhiInverse(double p) {
  static const boost::math::normal standard(0, 1);
  return boost::math::quantile(standard, std::clamp(p, 1e-300, 1 - 1e-16));
}

double SampleTruncatedNormal(double mu, double sigma, double low, double high,
                             std::mt19937_64& rng) {
  const double a = Phi((low - mu) / sigma), b = Phi((high - mu) / sigma);
  const double u = a + (b - a) * std::uniform_real_distribution<double>(0, 1)(rng);
  return std::clamp(mu + sigma * PhiInverse(u), low, high);
}

double LogSumExp(const std::vector<double>& v) {
  double m = -kInf;
  for (double x : v) m = std::max(m, x);
  if (!std::isfinite(m)) return m;
  double s = 0;
  for (double x : v) s += std::exp(x - m);
  return m + std::log(s);
}

// Optuna's default weights: older observations count less once there are more than 25.
std::vector<double> DefaultWeights(size_t n) {
  std::vector<double> w(n, 1.0);
  if (n >= 25) {
    const size_t ramp = n - 25;
    for (size_t i = 0; i < ramp; ++i) {
      w[i] = ramp == 1 ? 1.0 / static_cast<double>(n)
                       : 1.0 / static_cast<double>(n) + (1.0 - 1.0 / static_cast<double>(n)) *
                                                            static_cast<double>(i) /
                                                            static_cast<double>(ramp - 1);
    }
  }
  return w;
}

// A Parzen estimator over the dimensions: one component per observation plus the prior.
class ParzenEstimator {
 public:
  ParzenEstimator(const std::vector<TpeSearch::Dimension>& dims,
                  const std::vector<std::vector<double>>& observations,
                  const TpeSearch::Options& options)
      : dims_(dims), multivariate_(options.multivariate) {
    const double prior_weight = options.prior_weight;
    const size_t n = observations.size();
    weights_ = DefaultWeights(n);
    weights_.push_back(prior_weight);
    double total = 0;
    for (double w : weights_) total += w;
    for (double& w : weights_) w /= total;
    log_weights_.resize(weights_.size());
    for (size_t k = 0; k < weights_.size(); ++k) log_weights_[k] = std::log(weights_[k]);
    const size_t components = n + 1;
    mu_.assign(dims.size(), std::vector<double>(components));
    sigma_.assign(dims.size(), std::vector<double>(components));
    cat_.assign(dims.size(), {});
    log_norm_.assign(dims.size(), {});
    for (size_t j = 0; j < dims.size(); ++j) {
      const auto& d = dims[j];
      if (d.categorical) {
        // Optuna: each kernel puts prior_weight / n_kernels on every choice and 1 more on its
        // own; the prior kernel is uniform.
        cat_[j].assign(components, std::vector<double>(static_cast<size_t>(d.choices),
                                                       prior_weight / components));
        for (size_t k = 0; k < n; ++k) {
          cat_[j][k][static_cast<size_t>(observations[k][j])] += 1.0;
        }
        for (auto& row : cat_[j]) {
          double s = 0;
          for (double p : row) s += p;
          for (double& p : row) p = std::log(p / s);
        }
        continue;
      }
      const double low = Low(d), high = High(d), range = high - low;
      for (size_t k = 0; k < n; ++k) mu_[j][k] = observations[k][j];
      mu_[j][n] = 0.5 * (low + high);
      sigma_[j][n] = range;
      if (multivariate_) {
        // Scott-style width, shrinking with n in d + 4 dimensions. Optuna's factor is 0.2;
        // sweepd's 0.1 (with the steeper clip below) exploits the good region more and found
        // lower regret on every function of bench/search_quality (docs/sweep-spec.md).
        const double s = options.bandwidth_factor *
                         std::pow(std::max<double>(n, 1), -1.0 / (dims.size() + 4)) * range;
        for (size_t k = 0; k < n; ++k) sigma_[j][k] = s;
      } else {
        // Optuna's univariate rule: the larger gap to the sorted neighbours (endpoints: the one
        // neighbour), the prior among them.
        std::vector<size_t> order(components);
        for (size_t k = 0; k < components; ++k) order[k] = k;
        std::sort(order.begin(), order.end(),
                  [&](size_t a, size_t b) { return mu_[j][a] < mu_[j][b]; });
        for (size_t r = 0; r < components; ++r) {
          const double left = r > 0 ? mu_[j][order[r]] - mu_[j][order[r - 1]] : -kInf;
          const double right = r + 1 < components ? mu_[j][order[r + 1]] - mu_[j][order[r]] : -kInf;
          double s = std::max(left, right);
          if (!std::isfinite(s)) s = range;
          if (order[r] != n) sigma_[j][order[r]] = s;
        }
      }
      // Magic clip: no kernel narrower than range / min(100, 1 + components)^exponent; the
      // exponent is Optuna's 1 for univariate TPE.
      const double clip_exponent = multivariate_ ? options.clip_exponent : 1.0;
      const double min_sigma =
          range / std::pow(std::min(100.0, 1.0 + static_cast<double>(components)), clip_exponent);
      log_norm_[j].resize(components);
      for (size_t k = 0; k < components; ++k) {
        sigma_[j][k] = std::clamp(sigma_[j][k], min_sigma, range);
        // The truncated kernel's normaliser does not depend on x: computed once. As Optuna 3.1
        // (its _truncnorm.logpdf), the density is taken in the kernel's standardised units,
        // without the 1/sigma factor: a kernel counts in proportion to its bandwidth. This is
        // what Debian's Optuna does and it finds better optima on every function of
        // bench/search_quality than the exact density (see docs/sweep-spec.md).
        const double mass =
            Phi((high - mu_[j][k]) / sigma_[j][k]) - Phi((low - mu_[j][k]) / sigma_[j][k]);
        log_norm_[j][k] = std::log(std::sqrt(2 * M_PI)) + std::log(std::max(mass, 1e-300));
      }
    }
  }

  std::vector<double> Sample(std::mt19937_64& rng) const {
    std::vector<double> x(dims_.size());
    std::discrete_distribution<size_t> pick(weights_.begin(), weights_.end());
    const size_t shared = pick(rng);
    for (size_t j = 0; j < dims_.size(); ++j) {
      const size_t k = multivariate_ ? shared : pick(rng);
      const auto& d = dims_[j];
      if (d.categorical) {
        std::vector<double> p(cat_[j][k].size());
        for (size_t c = 0; c < p.size(); ++c) p[c] = std::exp(cat_[j][k][c]);
        x[j] = static_cast<double>(std::discrete_distribution<size_t>(p.begin(), p.end())(rng));
      } else {
        x[j] = SampleTruncatedNormal(mu_[j][k], sigma_[j][k], Low(d), High(d), rng);
      }
    }
    return x;
  }

  // One dimension on its own (univariate TPE): a draw from its mixture, and its log density.
  double SampleDim(size_t j, std::mt19937_64& rng) const {
    std::discrete_distribution<size_t> pick(weights_.begin(), weights_.end());
    const size_t k = pick(rng);
    const auto& d = dims_[j];
    if (d.categorical) {
      std::vector<double> p(cat_[j][k].size());
      for (size_t c = 0; c < p.size(); ++c) p[c] = std::exp(cat_[j][k][c]);
      return static_cast<double>(std::discrete_distribution<size_t>(p.begin(), p.end())(rng));
    }
    return SampleTruncatedNormal(mu_[j][k], sigma_[j][k], Low(d), High(d), rng);
  }

  double LogDensityDim(size_t j, double x) const {
    std::vector<double> terms(weights_.size());
    for (size_t k = 0; k < weights_.size(); ++k) terms[k] = log_weights_[k] + KernelLog(j, k, x);
    return LogSumExp(terms);
  }

  double LogDensity(const std::vector<double>& x) const {
    if (multivariate_) {
      std::vector<double> terms(weights_.size());
      for (size_t k = 0; k < weights_.size(); ++k) {
        double t = log_weights_[k];
        for (size_t j = 0; j < dims_.size(); ++j) t += KernelLog(j, k, x[j]);
        terms[k] = t;
      }
      return LogSumExp(terms);
    }
    double total = 0;
    std::vector<double> terms(weights_.size());
    for (size_t j = 0; j < dims_.size(); ++j) {
      for (size_t k = 0; k < weights_.size(); ++k)
        terms[k] = log_weights_[k] + KernelLog(j, k, x[j]);
      total += LogSumExp(terms);
    }
    return total;
  }

 private:
  static double Low(const TpeSearch::Dimension& d) { return d.low - d.step / 2; }
  static double High(const TpeSearch::Dimension& d) { return d.high + d.step / 2; }

  double KernelLog(size_t j, size_t k, double x) const {
    const auto& d = dims_[j];
    if (d.categorical) return cat_[j][k][static_cast<size_t>(x)];
    const double z = (x - mu_[j][k]) / sigma_[j][k];
    return -0.5 * z * z - log_norm_[j][k];
  }

  const std::vector<TpeSearch::Dimension>& dims_;
  bool multivariate_;
  std::vector<double> weights_, log_weights_;
  std::vector<std::vector<double>> mu_, sigma_, log_norm_;  // [dim][component]
  std::vector<std::vector<std::vector<double>>> cat_;       // [dim][component][choice]
};

}  // namespace

TpeSearch::TpeSearch(const v1::SweepSpec& spec)
    : spec_(spec),
      leaves_(LeafParameters(spec_)),
      random_(spec_),
      maximize_(spec_.metric().goal() == v1::GOAL_MAXIMIZE),
      n_startup_(spec_.search().n_startup_trials()),
      n_candidates_(std::max(1, spec_.search().n_ei_candidates())),
      seed_(spec_.seed()) {
  const auto& search = spec_.search();
  options_.multivariate = search.multivariate();
  if (search.gamma() > 0) options_.gamma = search.gamma();
  if (search.prior_weight() > 0) options_.prior_weight = search.prior_weight();
  if (search.bandwidth_factor() > 0) options_.bandwidth_factor = search.bandwidth_factor();
  if (search.clip_exponent() > 0) options_.clip_exponent = search.clip_exponent();
  for (const auto* leaf : leaves_) {
    if (leaf->distribution() == v1::CONSTANT) {
      dim_of_leaf_.push_back(-1);
      continue;
    }
    Dimension d;
    d.leaf = leaf;
    const double lo = leaf->min(), hi = leaf->max();
    switch (leaf->distribution()) {
      case v1::CATEGORICAL:
        d.categorical = true;
        d.choices = leaf->values_json_size();
        break;
      case v1::INT_UNIFORM:
        d.low = lo;
        d.high = hi;
        d.step = 1;
        break;
      case v1::UNIFORM:
        d.low = lo;
        d.high = hi;
        break;
      case v1::Q_UNIFORM:
        d.low = lo;
        d.high = hi;
        d.step = leaf->q();
        break;
      case v1::LOG_UNIFORM:
      case v1::Q_LOG_UNIFORM:
        d.low = lo;
        d.high = hi;
        d.log = true;
        break;
      case v1::LOG_UNIFORM_VALUES:
      case v1::Q_LOG_UNIFORM_VALUES:
      case v1::INV_LOG_UNIFORM_VALUES:
        d.low = std::log(lo);
        d.high = std::log(hi);
        d.log = true;
        break;
      case v1::INV_LOG_UNIFORM:
        d.low = -hi;
        d.high = -lo;
        d.log = true;
        break;
      case v1::NORMAL:
      case v1::Q_NORMAL:
        d.low = leaf->mu() - 4 * leaf->sigma();
        d.high = leaf->mu() + 4 * leaf->sigma();
        break;
      case v1::LOG_NORMAL:
      case v1::Q_LOG_NORMAL:
        d.low = leaf->mu() - 4 * leaf->sigma();
        d.high = leaf->mu() + 4 * leaf->sigma();
        d.log = true;
        break;
      default:  // beta laws
        d.low = 0;
        d.high = 1;
        break;
    }
    dim_of_leaf_.push_back(static_cast<int>(dims_.size()));
    dims_.push_back(d);
  }
}

std::optional<std::vector<double>> TpeSearch::Encode(const ParamSet& params) const {
  std::vector<double> x(dims_.size());
  for (size_t i = 0; i < leaves_.size(); ++i) {
    const int j = dim_of_leaf_[i];
    if (j < 0) continue;
    const Dimension& d = dims_[static_cast<size_t>(j)];
    auto it = std::find_if(params.begin(), params.end(),
                           [&](const v1::TrialParam& p) { return p.name() == leaves_[i]->path(); });
    if (it == params.end()) return std::nullopt;
    if (d.categorical) {
      const auto& values = leaves_[i]->values_json();
      auto found = std::find(values.begin(), values.end(), it->value_json());
      if (found == values.end()) return std::nullopt;
      x[static_cast<size_t>(j)] = static_cast<double>(found - values.begin());
      continue;
    }
    auto v = nlohmann::json::parse(it->value_json(), nullptr, false);
    if (!v.is_number()) return std::nullopt;
    double value = v.get<double>();
    if (d.log) {
      if (value <= 0) return std::nullopt;
      value = std::log(value);
    }
    x[static_cast<size_t>(j)] = std::clamp(value, d.low, d.high);
  }
  return x;
}

ParamSet TpeSearch::Decode(const std::vector<double>& x) const {
  ParamSet params(leaves_.size());
  for (size_t i = 0; i < leaves_.size(); ++i) {
    const v1::Parameter& leaf = *leaves_[i];
    params[i].set_name(leaf.path());
    const int j = dim_of_leaf_[i];
    if (j < 0) {
      params[i].set_value_json(leaf.values_json(0));
      continue;
    }
    const Dimension& d = dims_[static_cast<size_t>(j)];
    const double xi = x[static_cast<size_t>(j)];
    if (d.categorical) {
      params[i].set_value_json(leaf.values_json(static_cast<int>(xi)));
      continue;
    }
    double value = std::clamp(xi, d.low, d.high);
    if (d.log) value = std::exp(value);
    if (leaf.distribution() == v1::INT_UNIFORM) {
      params[i].set_value_json(std::to_string(std::llround(value)));
      continue;
    }
    const auto dist = leaf.distribution();
    if (dist == v1::Q_UNIFORM || dist == v1::Q_LOG_UNIFORM || dist == v1::Q_LOG_UNIFORM_VALUES ||
        dist == v1::Q_NORMAL || dist == v1::Q_LOG_NORMAL || dist == v1::Q_BETA) {
      value = QuantizeToStep(value, leaf.q());
    }
    params[i].set_value_json(leaf.integer() ? std::to_string(std::llround(value))
                                            : nlohmann::json(value).dump());
  }
  return params;
}

absl::StatusOr<ParamSet> TpeSearch::Propose(absl::Span<const TrialRecord> history) {
  // Observations: completed trials by value, then pruned ones (deeper first, then value).
  struct Observed {
    int rank_class;  // 0 completed, 1 pruned
    double depth;    // -last_step for pruned
    double score;
    size_t index;  // position in history (for Optuna's age weights)
    std::vector<double> x;
  };
  std::vector<Observed> observed;
  std::vector<std::vector<double>> running;
  for (size_t i = 0; i < history.size(); ++i) {
    const TrialRecord& r = history[i];
    auto x = Encode(r.params);
    if (!x) continue;
    if (r.state == v1::TRIAL_STATE_COMPLETED && r.value) {
      observed.push_back({0, 0, maximize_ ? -*r.value : *r.value, i, std::move(*x)});
    } else if ((r.state == v1::TRIAL_STATE_PRUNED || r.state == v1::TRIAL_STATE_PAUSED) &&
               r.value) {
      // A trial paused at a rung (ASHA with promotion) is known as far as it got, as a pruned one.
      observed.push_back({1, -static_cast<double>(r.last_step), maximize_ ? -*r.value : *r.value, i,
                          std::move(*x)});
    } else if (r.state == v1::TRIAL_STATE_QUEUED || r.state == v1::TRIAL_STATE_ASSIGNED ||
               r.state == v1::TRIAL_STATE_RUNNING) {
      running.push_back(std::move(*x));
    }
  }
  for (auto& o : observed) {
    if (std::isnan(o.score)) o.score = kInf;
  }
  if (static_cast<int>(observed.size()) < n_startup_ || dims_.empty()) {
    return random_.Sample(history.size());
  }
  std::vector<size_t> order(observed.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const Observed &x = observed[a], &y = observed[b];
    if (x.rank_class != y.rank_class) return x.rank_class < y.rank_class;
    if (x.depth != y.depth) return x.depth < y.depth;
    if (x.score != y.score) return x.score < y.score;
    return x.index < y.index;
  });
  const size_t n = observed.size();
  const size_t n_good =
      std::min<size_t>(static_cast<size_t>(std::ceil(options_.gamma * static_cast<double>(n))), 25);
  std::vector<size_t> good_idx(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(n_good));
  std::vector<size_t> bad_idx(order.begin() + static_cast<std::ptrdiff_t>(n_good), order.end());
  // Age weights follow trial order.
  std::sort(good_idx.begin(), good_idx.end(),
            [&](size_t a, size_t b) { return observed[a].index < observed[b].index; });
  std::sort(bad_idx.begin(), bad_idx.end(),
            [&](size_t a, size_t b) { return observed[a].index < observed[b].index; });
  std::vector<std::vector<double>> good, bad;
  for (size_t i : good_idx) good.push_back(observed[i].x);
  for (size_t i : bad_idx) bad.push_back(observed[i].x);
  // Constant liar: trials still running count as bad, so parallel proposals spread out.
  for (auto& x : running) bad.push_back(std::move(x));

  const ParzenEstimator l(dims_, good, options_);
  const ParzenEstimator g(dims_, bad, options_);
  std::mt19937_64 rng(SplitMix64(seed_ ^ SplitMix64(history.size() + 0x7e5ull)));
  std::vector<double> best_x;
  double best_gain = -kInf;
  if (!options_.multivariate) {
    // Optuna's independent sampling: each parameter takes its own best candidate.
    best_x.resize(dims_.size());
    for (size_t j = 0; j < dims_.size(); ++j) {
      double best_dim_gain = -kInf;
      for (int c = 0; c < n_candidates_; ++c) {
        const double x = l.SampleDim(j, rng);
        const double gain = l.LogDensityDim(j, x) - g.LogDensityDim(j, x);
        if (gain > best_dim_gain || c == 0) {
          best_dim_gain = gain;
          best_x[j] = x;
        }
      }
    }
    return Decode(best_x);
  }
  for (int c = 0; c < n_candidates_; ++c) {
    std::vector<double> x = l.Sample(rng);
    const double gain = l.LogDensity(x) - g.LogDensity(x);
    if (gain > best_gain || best_x.empty()) {
      best_gain = gain;
      best_x = std::move(x);
    }
  }
  return Decode(best_x);
}

}  // namespace sweepd
