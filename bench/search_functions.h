#pragma once

// Standard test functions for the search-quality benchmark, shared in spirit with
// optuna_search_driver.py (which defines the same functions in Python).

#include <cmath>
#include <map>
#include <string>
#include <vector>

namespace sweepd::bench {

struct TestFunction {
  std::string name;
  std::string parameters_yaml;  // the spec's `parameters:` block
  double minimum;
  // Parameters by flattened name (numbers as doubles; categorical values as their index).
  double (*evaluate)(const std::map<std::string, double>&);
};

inline double Branin(const std::map<std::string, double>& p) {
  const double x1 = p.at("x0"), x2 = p.at("x1");
  const double b = 5.1 / (4 * M_PI * M_PI), c = 5 / M_PI, t = 1 / (8 * M_PI);
  return std::pow(x2 - b * x1 * x1 + c * x1 - 6, 2) + 10 * (1 - t) * std::cos(x1) + 10;
}

inline double Hartmann6(const std::map<std::string, double>& p) {
  static const double alpha[4] = {1.0, 1.2, 3.0, 3.2};
  static const double A[4][6] = {{10, 3, 17, 3.5, 1.7, 8},
                                 {0.05, 10, 17, 0.1, 8, 14},
                                 {3, 3.5, 1.7, 10, 17, 8},
                                 {17, 8, 0.05, 10, 0.1, 14}};
  static const double P[4][6] = {{0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886},
                                 {0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991},
                                 {0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650},
                                 {0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381}};
  double total = 0;
  for (int i = 0; i < 4; ++i) {
    double inner = 0;
    for (int j = 0; j < 6; ++j) {
      const double d = p.at("x" + std::to_string(j)) - P[i][j];
      inner += A[i][j] * d * d;
    }
    total += alpha[i] * std::exp(-inner);
  }
  return -total;
}

inline double Rosenbrock4(const std::map<std::string, double>& p) {
  double total = 0;
  for (int i = 0; i < 3; ++i) {
    const double a = p.at("x" + std::to_string(i)), b = p.at("x" + std::to_string(i + 1));
    total += 100 * (b - a * a) * (b - a * a) + (1 - a) * (1 - a);
  }
  return total;
}

inline double Ackley5(const std::map<std::string, double>& p) {
  double sq = 0, cs = 0;
  for (int i = 0; i < 5; ++i) {
    const double x = p.at("x" + std::to_string(i));
    sq += x * x;
    cs += std::cos(2 * M_PI * x);
  }
  return -20 * std::exp(-0.2 * std::sqrt(sq / 5)) - std::exp(cs / 5) + 20 + M_E;
}

// A mixed space: log-float, int and categorical.
inline double Mixed(const std::map<std::string, double>& p) {
  static const double act_penalty[3] = {0.0, 0.5, 1.0};
  const double lr = p.at("lr"), layers = p.at("layers");
  return std::pow(std::log10(lr) + 3, 2) + std::pow(layers - 3, 2) / 4 +
         act_penalty[static_cast<int>(p.at("act"))];
}

inline std::string Box(int n, double lo, double hi) {
  std::string yaml;
  for (int i = 0; i < n; ++i) {
    yaml += "  x" + std::to_string(i) + ": {min: " + std::to_string(lo) +
            ", max: " + std::to_string(hi) + "}\n";
  }
  return yaml;
}

inline std::vector<TestFunction> TestFunctions() {
  return {
      {"branin", "  x0: {min: -5.0, max: 10.0}\n  x1: {min: 0.0, max: 15.0}\n", 0.397887, Branin},
      {"hartmann6", Box(6, 0.0, 1.0), -3.32237, Hartmann6},
      {"rosenbrock4", Box(4, -5.0, 10.0), 0.0, Rosenbrock4},
      {"ackley5", Box(5, -32.768, 32.768), 0.0, Ackley5},
      {"mixed",
       "  lr: {distribution: log_uniform_values, min: 0.00001, max: 0.1}\n"
       "  layers: {min: 1, max: 8}\n  act: {values: [relu, tanh, sigmoid]}\n",
       0.0, Mixed},
  };
}

}  // namespace sweepd::bench
