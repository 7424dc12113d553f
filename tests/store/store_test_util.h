#pragma once

// Helpers shared by the store tests and the crash child: a temporary directory and a small sweep.

#include <cstdlib>
#include <filesystem>
#include <string>

#include "common/spec_parser.h"
#include "store/store.h"

namespace sweepd::store::testing {

// A fresh directory under $TMPDIR, removed when the object goes.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "sweepd-store-XXXXXX").string();
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline NewSweep TestSweep(int64_t id, const std::string& goal = "minimize") {
  NewSweep sweep;
  sweep.id = id;
  sweep.public_id = "s-test" + std::to_string(id);
  sweep.spec_yaml = "method: random\ncommand: [run]\nmetric: {name: loss, goal: " + goal +
                    "}\nparameters:\n  lr: {min: 0.0, max: 1.0}\n";
  sweep.spec = ParseSweepSpec(sweep.spec_yaml)->spec;
  sweep.created_us = 1'700'000'000'000'000 + id;
  return sweep;
}

inline NewTrial TestTrial(int64_t id, int64_t sweep_id, int64_t number) {
  NewTrial trial;
  trial.id = id;
  trial.sweep_id = sweep_id;
  trial.number = number;
  trial.public_id = "s-test" + std::to_string(sweep_id) + "-" + std::to_string(number);
  trial.params_json = "{\"lr\":" + std::to_string(0.01 * static_cast<double>(number + 1)) + "}";
  trial.created_us = 1'700'000'000'000'000 + id;
  return trial;
}

}  // namespace sweepd::store::testing
