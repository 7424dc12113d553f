#!/usr/bin/env python3
"""Builds tests/wandb/fixtures/*.json: W&B's own test cases, with the outcomes W&B gives them.

Every case names the upstream test (or code line) it comes from. Expected outcomes are computed
by running W&B's own code (wandb/sweeps' SweepConfig, next_runs, stop_runs, HyperParameter.ppf;
wandb/wandb's create_sweep_command, create_sweep_command_args and the agent's command loop),
and wherever the upstream test states the outcome, the script asserts that W&B's code still gives
it. Nothing here looks at sweepd.

Usage (needs numpy, scipy, PyYAML, jsonschema, pydantic>=2; jsonref is optional):
  gen_fixtures.py --sweeps <wandb/sweeps checkout> --wandb <wandb/wandb checkout> [--out DIR]

The fixtures in git were made from wandb/sweeps b1dfc5f95e7fa179519718e92371d1423c116893 and
wandb/wandb b6e29505884ea60c79ca12091f1f75bd39d2f955.
"""

import argparse
import ast
import copy
import json
import logging
import math
import os
import re
import sys
import types
import warnings

SWEEPS_COMMIT = "b1dfc5f"
WANDB_COMMIT = "b6e2950"

parser = argparse.ArgumentParser()
parser.add_argument("--sweeps", required=True, help="wandb/sweeps checkout (has src/ and tests/)")
parser.add_argument("--wandb", required=True, help="wandb/wandb checkout (has wandb/)")
parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "fixtures"))
ARGS = parser.parse_args()

warnings.filterwarnings("ignore")
logging.disable(logging.CRITICAL)

# jsonref is only used by wandb/sweeps to look up schema definitions; a local stand-in does
# when it is not installed (recursive refs stay $ref, resolvable from each definition).
try:
    import jsonref  # noqa: F401
except ImportError:
    class _JsonRef:
        @staticmethod
        def replace_refs(obj):
            root = obj

            def resolve(ref):
                node = root
                for part in ref[2:].split("/"):
                    node = node[part]
                return node

            def walk(o, stack):
                if isinstance(o, dict):
                    if "$ref" in o and len(o) == 1:
                        if o["$ref"] in stack:
                            return dict(o)
                        return walk(resolve(o["$ref"]), stack + (o["$ref"],))
                    return {k: walk(v, stack) for k, v in o.items()}
                if isinstance(o, list):
                    return [walk(v, stack) for v in o]
                return o

            out = walk(obj, ())
            for d in out.get("definitions", {}).values():
                if isinstance(d, dict):
                    d["definitions"] = root["definitions"]
            return out

    sys.modules["jsonref"] = types.SimpleNamespace(JsonRef=_JsonRef)

sys.path.insert(0, os.path.join(ARGS.sweeps, "src"))
import numpy as np  # noqa: E402
import yaml  # noqa: E402
from sweeps import RunState, SweepConfig, SweepRun, next_runs, stop_runs  # noqa: E402
from sweeps.config import schema_violations_from_proposed_config  # noqa: E402
from sweeps.hyperband_stopping import hyperband_stop_runs  # noqa: E402
from sweeps.params import HyperParameter  # noqa: E402


# ---------------------------------------------------------------------------------------------
# Citations.

def _line_of(path, pattern, after=None):
    """Line of the first `pattern` (at or after the first `after`, when given)."""
    started = after is None
    with open(path) as f:
        for i, line in enumerate(f, 1):
            # An anchor ending in a newline must be the whole line.
            if not started and (line == after if after.endswith("\n") else after in line):
                started = True
            if started and pattern in line:
                return i
    raise KeyError(f"{pattern!r} not in {path}")


def sweeps_test(file, func, detail=""):
    line = _line_of(os.path.join(ARGS.sweeps, "tests", file), f"def {func}(")
    return f"wandb/sweeps@{SWEEPS_COMMIT} tests/{file}:{line} ({func}{detail})"


def sweeps_code(path, pattern, what="", after=None):
    line = _line_of(os.path.join(ARGS.sweeps, path), pattern, after)
    return f"wandb/sweeps@{SWEEPS_COMMIT} {path}:{line}" + (f" ({what})" if what else "")


def wandb_test(path, func, detail=""):
    line = _line_of(os.path.join(ARGS.wandb, path), f"def {func}(")
    return f"wandb/wandb@{WANDB_COMMIT} {path}:{line} ({func}{detail})"


def wandb_code(path, pattern, what=""):
    line = _line_of(os.path.join(ARGS.wandb, path), pattern)
    return f"wandb/wandb@{WANDB_COMMIT} {path}:{line}" + (f" ({what})" if what else "")


SCHEMA = "src/sweeps/config/schema.json"


def schema_ref(pattern, what, after=None):
    return sweeps_code(SCHEMA, pattern, what, after)


def write(name, cases):
    ids = [c["id"] for c in cases]
    assert len(ids) == len(set(ids)), f"duplicate ids in {name}"
    for i in ids:
        assert re.fullmatch(r"[A-Za-z0-9_]+", i), i
    os.makedirs(ARGS.out, exist_ok=True)
    with open(os.path.join(ARGS.out, name), "w") as f:
        json.dump(cases, f, indent=1, allow_nan=False)
        f.write("\n")
    print(f"{name}: {len(cases)} cases")


# ---------------------------------------------------------------------------------------------
# validation.json: does W&B accept the config?
#
# W&B "accepts" a config when SweepConfig(config) raises nothing (schema + min/max +
# probabilities + deprecated distributions) and the engine call that would run it raises
# nothing either: next_run for grid/random/bayes (grid search refuses continuous parameters and
# probabilities there; skipped when a custom `scheduler` proposes the runs), stop_runs when
# early_terminate is given.

WANDB_TYPE_TO_NAME = {
    HyperParameter.CONSTANT: "constant",
    HyperParameter.CATEGORICAL: "categorical",
    HyperParameter.CATEGORICAL_PROB: "categorical",
    HyperParameter.INT_UNIFORM: "int_uniform",
    HyperParameter.UNIFORM: "uniform",
    HyperParameter.LOG_UNIFORM_V1: "log_uniform",
    HyperParameter.LOG_UNIFORM_V2: "log_uniform_values",
    HyperParameter.INV_LOG_UNIFORM_V1: "inv_log_uniform",
    HyperParameter.INV_LOG_UNIFORM_V2: "inv_log_uniform_values",
    HyperParameter.Q_UNIFORM: "q_uniform",
    HyperParameter.Q_LOG_UNIFORM_V1: "q_log_uniform",
    HyperParameter.Q_LOG_UNIFORM_V2: "q_log_uniform_values",
    HyperParameter.NORMAL: "normal",
    HyperParameter.Q_NORMAL: "q_normal",
    HyperParameter.LOG_NORMAL: "log_normal",
    HyperParameter.Q_LOG_NORMAL: "q_log_normal",
    HyperParameter.BETA: "beta",
    HyperParameter.Q_BETA: "q_beta",
}


def wandb_outcome(config):
    """(accepted, stage that refused, message)."""
    try:
        violations = schema_violations_from_proposed_config(copy.deepcopy(config))
    except Exception as e:  # not a dict
        return False, "SweepConfig", f"{type(e).__name__}: {e}"
    try:
        SweepConfig(copy.deepcopy(config))
    except Exception as e:
        msg = "; ".join(violations) or f"{type(e).__name__}: {e}"
        return False, "SweepConfig", msg
    method = config.get("method")
    # With a `scheduler`, the custom scheduler proposes runs, not next_run.
    if method in ("grid", "random", "bayes") and "parameters" in config and "scheduler" not in config:
        try:
            next_runs(copy.deepcopy(config), [], validate=False, n=1)
        except Exception as e:
            return False, "next_run", f"{type(e).__name__}: {e}"
    if "early_terminate" in config:
        try:
            stop_runs(copy.deepcopy(config), [], validate=False)
        except Exception as e:
            return False, "stop_runs", f"{type(e).__name__}: {e}"
    return True, "", ""


def filled_expectations(config):
    """What W&B fills in for an accepted config: each top-level leaf's distribution and numeric
    defaults, and early_terminate's defaults."""
    filled = SweepConfig(copy.deepcopy(config))
    params = {}
    for name, p in filled.get("parameters", {}).items():
        if "parameters" in p:
            continue
        hp = HyperParameter(name, config["parameters"][name])
        entry = {"distribution": WANDB_TYPE_TO_NAME[hp.type]}
        for key in ("mu", "sigma", "a", "b", "q"):
            if key in hp.config:
                entry[key] = hp.config[key]
        params[name] = entry
    out = {}
    if params:
        out["expect_params"] = params
    if "early_terminate" in filled and isinstance(filled["early_terminate"], dict):
        et = {k: filled["early_terminate"][k] for k in ("eta", "strict")
              if k in filled["early_terminate"]}
        out["expect_early_terminate"] = et
    return out


VALIDATION = []


def V(id, upstream, config, stated=None, note="", external=True, warn_ok=None, feature=None):
    accepted, stage, message = wandb_outcome(config)
    if stated is not None:
        assert accepted == stated, (id, accepted, stage, message)
    case = {"id": id, "upstream": upstream, "config": config, "valid": accepted}
    if not accepted:
        case["wandb_rejects_at"] = stage
        case["wandb_message"] = message[:400]
    if stated is None:
        case["expected_from"] = "W&B code (upstream tests do not state this case)"
    if not external:
        case["sweepd_external"] = False
    if warn_ok:
        case["sweepd_warning_ok"] = warn_ok
    if feature:
        case["feature"] = feature
    if note:
        case["note"] = note
    if accepted:
        case.update(filled_expectations(config))
    VALIDATION.append(case)


TV, TC, TS = "test_validation.py", "test_config.py", "test_schema.py"
V1 = {"v1": {"values": ["a", "b", "c"]}}

for st in ["bayes", "grid", "random"]:
    V(f"validation_disable_goal_minimise_{st}", sweeps_test(TV, "test_validation_disable", f"[{st}]"),
      {"metric": {"name": "loss", "goal": "minimise"}, "method": st, "parameters": V1},
      stated=False, note="metric.goal 'minimise' is not in the enum; SweepConfig raises. "
                         "(next_run with validate=False tolerates it.)")
V("not_enough_params_empty", sweeps_test(TV, "test_validation_not_enough_params"),
  {"method": "random", "parameters": {}}, stated=False, note="parameters: minProperties 1")
V("not_enough_params_missing", sweeps_test(TV, "test_validation_not_enough_params", ", 2nd part"),
  {"method": "random"}, stated=False)
V("minmax_type_inference_uniform_int_bounds", sweeps_test(TV, "test_minmax_type_inference"),
  {"method": "random", "parameters": {"a": {"min": 0, "max": 1, "distribution": "uniform"}}},
  stated=True)
V("minmax_type_inference_int_uniform_float_bounds",
  sweeps_test(TV, "test_minmax_type_inference", ", 2nd config"),
  {"method": "random", "parameters": {"a": {"min": 0.0, "max": 1.0, "distribution": "int_uniform"}}},
  stated=False, note="W&B: 2 violations; int_uniform's min/max have format 'integer' "
                     "(isinstance(value, int)), so 0.0 and 1.0 are refused")
for ct in ["cloud", "local", "invalid"]:
    V(f"controller_{ct}", sweeps_test(TV, "test_controller", f"[{ct}]"),
      {"controller": {"type": ct}, "method": "random", "parameters": {"a": {"values": [1, 2, 3, 4]}}},
      stated=ct != "invalid", note="controller.type must be local or cloud")
V("no_method", sweeps_test(TV, "test_sweepconfig_no_method_baseline_validation"),
  {"parameters": {"a": {"values": [1, 2, 3, 4]}}}, stated=False)
V("early_terminate_invalid_type", sweeps_test(TV, "test_invalid_early_stopping", ", type 'invalid type'"),
  {"method": "bayes", "parameters": V1, "metric": {"name": "loss", "goal": "minimise"},
   "early_terminate": {"type": "invalid type"}}, stated=False)
V("early_terminate_extra_key", sweeps_test(TV, "test_invalid_early_stopping", ", extra_key"),
  {"method": "bayes", "parameters": V1, "metric": {"name": "loss", "goal": "minimize"},
   "early_terminate": {"type": "hyperband", "extra_key": 1234, "min_iter": 100}},
  stated=None,
  note="metric.goal corrected to 'minimize' (upstream has 'minimise') so only the extra key is at "
       "issue. The upstream test runs stop_runs with validate=False, which drops unknown "
       "early_terminate keys on purpose (hyperband_stopping.py: 'Extra keys are disallowed by the "
       "schema but to maintain compatibility we will allow them here') and returns []. "
       "SweepConfig refuses the key (hyperband_stopping additionalProperties false).")
for st in ["bayes", "grid", "random"]:
    V(f"param_dict_nested_{st}", sweeps_test(TV, "test_param_dict", f"[{st}], 1st config"),
      {"method": st, "metric": {"name": "loss", "goal": "minimize"},
       "parameters": {"a": {"parameters": {"b": {"values": [1, 2]},
                                           "c": {"parameters": {"d": {"value": 1}}}}}}},
      stated=True)
    V(f"param_dict_same_name_other_level_{st}",
      sweeps_test(TV, "test_param_dict", f"[{st}], 2nd config"),
      {"method": st, "metric": {"name": "loss", "goal": "minimize"},
       "parameters": {"a": {"parameters": {"b": {"value": 1},
                                           "c": {"parameters": {"d": {"value": 2}}}}},
                      "b": {"values": [2, 3]}}},
      stated=True, note="'naming conflict is ok as long as different nest levels'")
V("invalid_minmax", sweeps_test(TV, "test_invalid_minmax_with_no_sweepconfig_validation"),
  {"method": "random", "parameters": {"a": {"max": 0, "min": 1}}}, stated=False)
for pt in ["log_uniform", "q_log_uniform", "inv_log_uniform"]:
    V(f"old_distribution_{pt}", sweeps_test(TV, "test_that_old_distributions_warn", f"[{pt}]"),
      {"method": "random", "parameters": {"a": {"min": 1, "max": 2, "distribution": pt}}},
      stated=False, warn_ok=pt,
      note="W&B lists a violation ('uses log_uniform, where min/max specify base-e exponents. "
           "Use log_uniform_values to specify limit values.'), so SweepConfig raises; the W&B "
           "server reports such violations to the CLI as warnings (configValidationWarnings). "
           "sweepd passes this case if it refuses the parameter or warns about it.")
for pt in ["log_uniform_values", "q_log_uniform_values", "inv_log_uniform_values"]:
    V(f"minmax_fails_{pt}",
      sweeps_test(TV, "test_that_minmax_validation_fails_on_loguniform_values_types", f"[{pt}]"),
      {"method": "random", "parameters": {"a": {"min": 2, "max": 1, "distribution": pt}}},
      stated=False)
for rc, name in [(-1, "m1"), (0, "0"), (1, "1"), (300, "300"), (-0.3, "m0_3"), (5.1, "5_1"),
                 ("1", "str1")]:
    V(f"run_cap_{name}", sweeps_test(TV, "test_that_run_cap_validation_works_for_min_value", f"[{rc!r}]"),
      {"method": "random", "parameters": {"a": {"values": [1, 2, 3, 4]}}, "run_cap": rc},
      stated=isinstance(rc, int) and not isinstance(rc, bool) and rc > 0)

V("nonuniform_array_elements_categorical",
  sweeps_test(TC, "test_invalid_sweep_config_nonuniform_array_elements_categorical"),
  {"method": "grid", "parameters": {"v1": {"values": [None, 2, 3, "a", [2, 3]]}}}, stated=True,
  note="upstream has the tuple (2, 3); YAML/JSON have no tuples, so it is the list [2, 3] here")
V("min_max_validation", sweeps_test(TC, "test_min_max_validation"),
  {"method": "random", "parameters": {"v1": {"max": 3, "min": 5}, "v2": {"min": 5, "max": 6}}},
  stated=False)
V("negative_sigma", sweeps_test(TC, "test_negative_sigma_validation"),
  {"method": "random", "parameters": {"v1": {"mu": 0.1, "sigma": -0.1, "distribution": "normal"}}},
  stated=False)
V("missing_parameters_section", sweeps_test(TC, "test_missing_parameters_section"),
  {"method": "random"}, stated=False)
V("wrong_prob_length", sweeps_test(TC, "test_wrong_prob_length"),
  {"method": "random", "parameters": {"v1": {"values": [1, 2, 3], "probabilities": [0.1, 0.2, 0.3, 0.4]}}},
  stated=False)
V("irregular_probs", sweeps_test(TC, "test_irregular_probs"),
  {"method": "random", "parameters": {"v1": {"values": [1, 2, 3], "probabilities": [0.1, 0.2, 0.3]}}},
  stated=False)
V("categorical_prob_grid", sweeps_test(TC, "test_categorical_prob_grid"),
  {"method": "grid", "parameters": {"v1": {"values": [1, 2, 3], "probabilities": [0.2, 0.2, 0.6]}}},
  stated=False, note="SweepConfig accepts it; grid_search_next_runs raises ValueError "
                     "('Specification of probabilities for categorical parameters is disallowed "
                     "in grid search')")
V("metrics_multi_objective_custom", sweeps_test(TC, "test_metrics_multi_objective_with_custom_method"),
  {"method": "custom", "metrics": [{"name": "loss", "goal": "minimize"},
                                   {"name": "accuracy", "goal": "maximize"}],
   "parameters": {"v1": {"values": [1, 2, 3]}}}, stated=True, feature="custom_scheduler")
V("metrics_requires_custom", sweeps_test(TC, "test_metrics_requires_custom_method"),
  {"method": "bayes", "metrics": [{"name": "loss", "goal": "minimize"},
                                  {"name": "accuracy", "goal": "maximize"}],
   "parameters": {"v1": {"values": [1, 2, 3]}}}, stated=False)
V("metric_and_metrics_exclusive", sweeps_test(TC, "test_metric_and_metrics_mutually_exclusive"),
  {"method": "custom", "metric": {"name": "loss"},
   "metrics": [{"name": "loss", "goal": "minimize"}, {"name": "accuracy", "goal": "maximize"}],
   "parameters": {"v1": {"values": [1, 2, 3]}}}, stated=False)
V("metrics_requires_two", sweeps_test(TC, "test_metrics_requires_at_least_two"),
  {"method": "custom", "metrics": [{"name": "loss", "goal": "minimize"}],
   "parameters": {"v1": {"values": [1, 2, 3]}}}, stated=False)
SCHED = {"engine": "wandb", "source": "scheduler.py", "optimizer": "build_study",
         "search_space": "search_space"}
V("scheduler_wandb_engine", sweeps_test(TC, "test_scheduler_wandb_engine_valid"),
  {"method": "bayes", "scheduler": dict(SCHED), "parameters": {"v1": {"values": [1, 2, 3]}}},
  stated=True, feature="custom_scheduler",
  note="the same config is test_scheduler_optimizer_and_search_space_with_source_valid")
for eng in ["optuna", "ax"]:
    V(f"scheduler_unavailable_engine_{eng}", sweeps_test(TC, "test_scheduler_unavailable_engine_raises", f"[{eng}]"),
      {"method": "bayes", "scheduler": dict(SCHED, engine=eng), "parameters": {"v1": {"values": [1, 2, 3]}}},
      stated=False)
V("scheduler_invalid_engine", sweeps_test(TC, "test_scheduler_invalid_engine_rejected"),
  {"method": "bayes", "scheduler": dict(SCHED, engine="not-a-real-engine"),
   "parameters": {"v1": {"values": [1, 2, 3]}}}, stated=False)
V("scheduler_missing_engine", sweeps_test(TC, "test_scheduler_missing_required_field"),
  {"method": "bayes", "scheduler": {k: v for k, v in SCHED.items() if k != "engine"},
   "parameters": {"v1": {"values": [1, 2, 3]}}}, stated=False)
V("scheduler_only_engine", sweeps_test(TC, "test_scheduler_only_engine_required"),
  {"method": "bayes", "scheduler": {"engine": "wandb"}, "parameters": {"v1": {"values": [1, 2, 3]}}},
  stated=True, feature="custom_scheduler")
for field in ["optimizer", "search_space"]:
    V(f"scheduler_{field}_requires_source",
      sweeps_test(TC, "test_scheduler_optimizer_or_search_space_requires_source", f"[{field}]"),
      {"method": "bayes", "scheduler": {"engine": "wandb", field: "build_study"},
       "parameters": {"v1": {"values": [1, 2, 3]}}}, stated=False)
V("scheduler_engine_wandb_custom_method", sweeps_test(TC, "test_scheduler_engine_wandb_requires_method"),
  {"method": "custom", "scheduler": {"engine": "wandb"}, "parameters": {"v1": {"values": [1, 2, 3]}}},
  stated=False)
V("scheduler_and_early_terminate", sweeps_test(TC, "test_scheduler_and_early_terminate_mutually_exclusive"),
  {"method": "bayes", "scheduler": {"engine": "wandb"},
   "early_terminate": {"type": "hyperband", "min_iter": 3}, "parameters": {"v1": {"values": [1, 2, 3]}}},
  stated=False)
for ct in ["local", "cloud"]:
    V(f"scheduler_and_controller_{ct}", sweeps_test(TC, "test_scheduler_and_controller_mutually_exclusive", f", {ct}"),
      {"method": "bayes", "scheduler": {"engine": "wandb"}, "controller": {"type": ct},
       "parameters": {"v1": {"values": [1, 2, 3]}}},
      stated=ct == "cloud", feature="custom_scheduler" if ct == "cloud" else None)
V("early_terminate_without_scheduler", sweeps_test(TC, "test_early_terminate_without_scheduler_still_works"),
  {"method": "bayes", "metric": {"name": "loss", "goal": "minimize"},
   "early_terminate": {"type": "hyperband", "min_iter": 3}, "parameters": {"v1": {"values": [1, 2, 3]}}},
  stated=True)
V("parameters_not_required_with_search_space",
  sweeps_test(TC, "test_parameters_not_required_when_scheduler_defines_search_space"),
  {"method": "bayes", "scheduler": dict(SCHED)}, stated=True, feature="custom_scheduler")
V("parameters_alongside_search_space",
  sweeps_test(TC, "test_parameters_still_allowed_alongside_scheduler_search_space"),
  {"method": "bayes", "scheduler": dict(SCHED), "parameters": {"v1": {"values": [1, 2, 3]}}},
  stated=True, feature="custom_scheduler")
V("parameters_required_without_scheduler", sweeps_test(TC, "test_parameters_still_required_without_scheduler"),
  {"method": "bayes"}, stated=False)
V("parameters_required_empty_search_space",
  sweeps_test(TC, "test_parameters_still_required_when_scheduler_has_no_search_space"),
  {"method": "bayes", "scheduler": dict(SCHED, search_space="")}, stated=False)


def one_param(cfg, method="random"):
    return {"method": method, "parameters": {"p": cfg}}


SCHEMA_NOTE = "upstream builds HyperParameter('p', cfg) directly; here it is the only parameter"
V("type_inference_int_uniform", sweeps_test(TS, "test_json_type_inference_int_uniform"),
  one_param({"min": 0, "max": 1}), stated=True, note=SCHEMA_NOTE)
V("type_inference_uniform", sweeps_test(TS, "test_json_type_inference_uniform"),
  one_param({"min": 0.0, "max": 1.0}), stated=True, note=SCHEMA_NOTE)
V("type_inference_uniform_mixed_float_min", sweeps_test(TS, "test_json_type_inference_uniform_mixed"),
  one_param({"min": 0.0, "max": 1}), stated=True, note=SCHEMA_NOTE)
V("type_inference_uniform_mixed_float_max", sweeps_test(TS, "test_json_type_inference_uniform_mixed", ", 2nd"),
  one_param({"min": 0, "max": 1.0}), stated=True, note=SCHEMA_NOTE)
for func, cfg, nm in [
        ("test_json_type_inference_and_imputation_normal", {"distribution": "normal"}, "normal_defaults"),
        ("test_json_type_inference_and_imputation_lognormal", {"distribution": "log_normal"}, "log_normal_defaults"),
        ("test_json_type_inference_categorical", {"values": [1, 2, 3]}, "categorical"),
        ("test_json_type_inference_constant", {"value": "abcd"}, "constant"),
        ("test_json_type_inference_q_normal", {"distribution": "q_normal", "q": 0.1}, "q_normal_defaults"),
        ("test_json_type_inference_q_beta", {"distribution": "q_beta"}, "q_beta_defaults"),
        ("test_json_type_inference_beta", {"distribution": "beta"}, "beta_defaults"),
        ("test_uniform_with_integer_min_max", {"distribution": "uniform", "min": 0, "max": 1}, "uniform_integer_bounds")]:
    V(f"type_inference_{nm}", sweeps_test(TS, func), one_param(cfg), stated=True, note=SCHEMA_NOTE)
V("totally_invalid_param", sweeps_test(TS, "test_totally_invalid_config"),
  one_param({"invalid": "this config is not valid"}), stated=False, note=SCHEMA_NOTE)
V("categorical_no_values", sweeps_test(TS, "test_categorical_hyperparameter_no_values"),
  one_param({"values": []}), stated=False, note=SCHEMA_NOTE)
V("hyperband_missing_eta_imputed", sweeps_test(TS, "test_hyperband_missing_eta_imputed"),
  {"command": ["${env}", "${interpreter}", "${program}", "sweep", "2dconv_lstm.stat.ac", "--dataset",
               "deam", "--temp_folder", "a_deam", "--batch-size"],
   "early_terminate": {"min_iter": 3, "type": "hyperband"}, "method": "random",
   "metric": {"goal": "minimize", "name": "val/loss"}, "name": "AC-2DConvLSTM-Stat-DEAM",
   "parameters": {"dropout": {"values": ["0.15", "0.2", "0.25", "0.3", "0.4", "0.5"]},
                  "lr": {"values": ["0.001", "0.005", "0.01"]},
                  "momentum": {"values": ["0.8", "0.9", "0.95"]},
                  "n_fft": {"value": 1024}, "n_mels": {"value": 128}},
   "program": "exec.py", "project": "mer"},
  stated=True, external=False, note="a real user config (has program); eta defaults to 3")
V("invalid_metric_string", sweeps_test(TS, "test_invalid_metric"),
  {"method": "grid", "metric": "{'goal': 'maximize', 'name': 'val/loss'}",
   "parameters": {"a": {"values": [1, 2, 3, 4]}}}, stated=False)
V("hyperband_bad_config_string", sweeps_test("test_hyperband_stopping.py", "test_hyperband_runs_with_bad_config"),
  {"method": "bayes", "metric": {"goal": "minimize", "name": "overall_eval_loss"},
   "early_terminate": "hyperband", "parameters": {"a": {"values": [1, 2, 3]}}}, stated=False)

# Derived from W&B's schema and engine (no upstream test states these).
PA = {"a": {"values": [1, 2]}}
V("program_not_required", schema_ref('"method"', "top-level required: [method] only; program is optional",
                                     after='  "required": [\n'),
  {"method": "random", "parameters": PA}, external=False,
  note="parsed as a normal (not external) sweep: W&B's schema never requires program. (Only "
       "wandb.agent(function=...) can run this sweep: the CLI agent puts command['program'] "
       "into the argv for ${program}, wandb_agent.py:647.)")
V("program_not_required_custom_command",
  sweeps_code(SCHEMA, '"program": {', "program: optional string"),
  {"method": "random", "parameters": PA, "command": ["python", "train.py", "${args}"]}, external=False)
V("normal_sigma_zero", schema_ref('"minimum": 0.0', "param_normal sigma minimum 0.0 (inclusive)"),
  one_param({"distribution": "normal", "mu": 0, "sigma": 0}), note="W&B accepts it; its random search then samples NaN (scipy with a zero scale or shape)")
V("log_normal_sigma_zero", schema_ref('"minimum": 0', "sigma minimum 0 (inclusive)", after='"param_lognormal": {'),
  one_param({"distribution": "log_normal", "sigma": 0}), note="W&B accepts it; its random search then samples NaN (scipy with a zero scale or shape)")
V("beta_a_zero", schema_ref('"minimum": 0', "param_beta a: minimum 0 (inclusive)", after='"param_beta": {'),
  one_param({"distribution": "beta", "a": 0, "b": 1}), note="W&B accepts it; its random search then samples NaN (scipy with a zero scale or shape)")
V("beta_b_zero", schema_ref('"minimum": 0', "param_beta b: minimum 0 (inclusive)", after='"b": {'),
  one_param({"distribution": "beta", "a": 1, "b": 0}), note="W&B accepts it; its random search then samples NaN (scipy with a zero scale or shape)")
V("q_zero", schema_ref('"exclusiveMinimum": 0', "q exclusiveMinimum 0", after='"param_quniform": {'),
  one_param({"distribution": "q_uniform", "min": 0, "max": 10, "q": 0}))
V("negative_probability", schema_ref('"minimum": 0', "probabilities items minimum 0", after='"param_categorical_w_probabilities": {'),
  one_param({"values": [1, 2], "probabilities": [1.5, -0.5]}))
V("value_and_values", schema_ref('"additionalProperties": false', "param_single_value additionalProperties false", after='"param_single_value": {'),
  one_param({"value": 1, "values": [1, 2]}))
V("int_uniform_fractional_bound", schema_ref('"type": "integer"', "int_uniform min/max type integer", after='"param_int_uniform": {'),
  one_param({"distribution": "int_uniform", "min": 1.5, "max": 4}))
V("log_uniform_values_min_zero", schema_ref('"exclusiveMinimum": 0.0', "min exclusiveMinimum 0", after='"param_loguniform_v2": {'),
  one_param({"distribution": "log_uniform_values", "min": 0, "max": 1}))
HB = {"method": "random", "metric": {"name": "loss"}, "parameters": PA}
V("hyperband_min_iter_and_s", schema_ref('"anyOf"', "hyperband_stopping anyOf [max_iter, s] | [min_iter]", after='"hyperband_stopping": {'),
  dict(HB, early_terminate={"type": "hyperband", "min_iter": 3, "s": 2}),
  note="min_iter satisfies the schema's anyOf; s is an allowed property. stop_runs uses the "
       "min_iter schedule (hyperband_stopping.py checks max_iter first) and ignores s.")
V("hyperband_min_iter_max_iter_s", schema_ref('"anyOf"', "hyperband_stopping anyOf [max_iter, s] | [min_iter]", after='"hyperband_stopping": {'),
  dict(HB, early_terminate={"type": "hyperband", "min_iter": 3, "max_iter": 27, "s": 2}),
  note="stop_runs uses max_iter and s")
V("hyperband_min_iter_and_max_iter", schema_ref('"anyOf"', "hyperband_stopping anyOf [max_iter, s] | [min_iter]", after='"hyperband_stopping": {'),
  dict(HB, early_terminate={"type": "hyperband", "min_iter": 3, "max_iter": 27}),
  note="SweepConfig accepts it (min_iter branch of anyOf) but stop_runs raises KeyError 's' "
       "(it takes the max_iter branch whenever max_iter is present)")
V("hyperband_max_iter_only", schema_ref('"anyOf"', "hyperband_stopping anyOf [max_iter, s] | [min_iter]", after='"hyperband_stopping": {'),
  dict(HB, early_terminate={"type": "hyperband", "max_iter": 27}))
V("hyperband_eta_one", schema_ref('"exclusiveMinimum": 1', "eta exclusiveMinimum 1", after='"eta": {'),
  dict(HB, early_terminate={"type": "hyperband", "min_iter": 3, "eta": 1}))
V("hyperband_min_iter_zero", schema_ref('"minimum": 1', "min_iter minimum 1", after='"min_iter": {'),
  dict(HB, early_terminate={"type": "hyperband", "min_iter": 0}))
V("hyperband_strict_default", schema_ref('"default": true', "strict default true"),
  dict(HB, early_terminate={"type": "hyperband", "min_iter": 3}))
V("early_terminate_without_metric", sweeps_code("src/sweeps/run.py", 'early terminate requires "metric" section'),
  {"method": "random", "parameters": PA, "early_terminate": {"type": "hyperband", "min_iter": 3}})
V("bayes_without_metric", sweeps_code("src/sweeps/bayes_search.py", 'Bayesian search requires "metric" section'),
  {"method": "bayes", "parameters": PA})
V("grid_continuous_param", sweeps_code("src/sweeps/grid_search.py", "is a disallowed type with grid search"),
  {"method": "grid", "parameters": {"a": {"min": 0.0, "max": 1.0}}})
V("method_custom_without_scheduler", schema_ref('"custom"', "method enum includes custom", after='    "method": {'),
  {"method": "custom", "parameters": PA}, feature="custom_scheduler",
  note="SweepConfig accepts it; a custom scheduler, not next_run, proposes the runs")
V("param_dotted_name_beside_parent", schema_ref('"pattern": "^^[A-Za-z_][A-Za-z0-9_.-]*$"', "names may contain dots"),
  {"method": "random", "parameters": {"a": {"values": [1]}, "a.b": {"values": [2]}}},
  note="W&B nests only through `parameters:` (its internal delimiter is '.wbnest[599c28ca25da].'); "
       "'a' and 'a.b' are two flat keys of the run config")
V("param_dotted_name_beside_group", schema_ref('"pattern": "^^[A-Za-z_][A-Za-z0-9_.-]*$"', "names may contain dots"),
  {"method": "random", "parameters": {"a": {"parameters": {"b": {"values": [1]}}}, "a.b": {"values": [2]}}},
  note="W&B's run config is {'a': {'value': {'b': 1}}, 'a.b': {'value': 2}}")
V("param_name_129_chars", schema_ref('"pattern": "^^[A-Za-z_][A-Za-z0-9_.-]*$"', "no length limit"),
  {"method": "random", "parameters": {"x" * 129: {"values": [1]}}})
V("param_name_leading_digit", schema_ref('"pattern": "^^[A-Za-z_][A-Za-z0-9_.-]*$"', "propertyNames pattern"),
  {"method": "random", "parameters": {"1abc": {"values": [1]}}})
V("unknown_top_level_key", schema_ref('"additionalProperties": false', "top level additionalProperties false", after='  "required": [\n'),
  {"method": "random", "parameters": PA, "foo": 1})
V("kind_apiversion_job", schema_ref('"apiVersion": {', "apiVersion, kind, job, image_uri are allowed"),
  {"apiVersion": "v1", "kind": "sweep", "job": "entity/project/job:v1", "method": "random", "parameters": PA})
V("labels", schema_ref('"description": {', "name, description, project, entity"),
  {"name": "n", "description": "d", "project": "p", "entity": "e", "method": "random", "parameters": PA})
V("metric_target_impute", schema_ref('"impute_while_running": {', "metric keys"),
  {"method": "bayes", "parameters": PA,
   "metric": {"name": "loss", "goal": "maximize", "target": 0.9, "impute": "best",
              "impute_while_running": "false"}})
V("command_project_macro", wandb_code("wandb/wandb_agent.py", "replace_list = sweep_vars.get(c[2:-1])",
                                      "unknown ${...} items expand to nothing"),
  {"program": "train.py", "method": "random", "parameters": PA,
   "command": ["${env}", "${interpreter}", "${program}", "--project", "${project}", "${args}"]},
  external=False,
  note="the schema puts no constraint on command items; W&B's agent drops ${project} (it has no "
       "such macro), see command.json")
V("command_list_macro_inside_item", wandb_code("wandb/wandb_agent.py", 'if c.startswith("${") and c.endswith("}"):',
                                               "only whole items are macros"),
  {"program": "train.py", "method": "random", "parameters": PA,
   "command": ["${env}", "${interpreter}", "${program}", "--flags=${args}"]}, external=False,
  note="W&B passes '--flags=${args}' through literally, see command.json")
V("command_not_a_list", schema_ref('"command": {', "type array"),
  {"method": "random", "parameters": PA, "command": "python train.py"})

write("validation.json", VALIDATION)


# ---------------------------------------------------------------------------------------------
# grid.json: the parameter sets grid search proposes, in order, until it has none left.
#
# As W&B's kernel_for_grid_search_tests does: next_run(config, runs) over and over, each
# proposal appended to runs, until next_run returns None. randomize_order=False, so the order is
# W&B's deterministic one (itertools.product over parameters sorted by name, the first name
# varying slowest); only cases with check_order rely on it, as the upstream tests do.

GRID = []


def _values(run_config):
    return {k: v["value"] for k, v in run_config.items()}


def _wb(x):
    """Upstream answers may hold tuples; fixtures are JSON."""
    if isinstance(x, tuple):
        return [_wb(v) for v in x]
    if isinstance(x, list):
        return [_wb(v) for v in x]
    if isinstance(x, dict):
        return {k: _wb(v) for k, v in x.items()}
    return x


def wandb_grid(config, history):
    runs = [SweepRun(config=copy.deepcopy(h)) for h in history]
    out = []
    while True:
        r = next_runs(copy.deepcopy(config), runs, validate=False, n=1)[0]
        if r is None:
            return out
        out.append(_values(r.config))
        runs.append(r)
        assert len(out) < 100000


def G(id, upstream, config, history=(), stated=None, check_order=False, next_only=False, note="",
      config_yaml=None, history_json=None, stated_next="unset"):
    proposals = wandb_grid(config, list(history))
    case = {"id": id, "upstream": upstream}
    if config_yaml is not None:
        case["config_yaml"] = config_yaml
    else:
        case["config"] = config
    if history:
        case["history"] = history_json if history_json is not None else list(history)
    if next_only:
        first = proposals[0] if proposals else None
        if stated_next != "unset":
            assert _wb(stated_next) == first, (id, stated_next, first)
        case["expected_next"] = first
    else:
        if stated is not None:
            stated = [_wb(s) for s in stated]
            if check_order:
                assert stated == proposals, (id, stated, proposals)
            else:
                assert len(stated) == len(proposals), (id, len(stated), len(proposals))
                for p in proposals:
                    assert p in stated, (id, p)
        else:
            case["expected_from"] = "W&B code (grid_search.py); upstream does not state the list"
        case["expected"] = proposals
        case["check_order"] = check_order
    if note:
        case["note"] = note
    GRID.append(case)


TG = "test_grid_search.py"
C2 = {"method": "grid", "parameters": {"v1": {"values": [1, 2, 3]}, "v2": {"values": [4, 5]}}}


def pairs(answers):
    return [{"v1": a, "v2": b} for a, b in answers]


G("from_start", sweeps_test(TG, "test_grid_from_start_with_and_without_randomize"), C2,
  stated=pairs([(1, 4), (1, 5), (2, 4), (2, 5), (3, 4), (3, 5)]),
  note="upstream checks the set (randomize True/False, vectorize True/False)")
G("starting_from_in_progress", sweeps_test(TG, "test_grid_search_starting_from_in_progress"), C2,
  history=[{"v1": {"value": 2}, "v2": {"value": 4}}, {"v1": {"value": 1}, "v2": {"value": 5}}],
  stated=pairs([(1, 4), (2, 5), (3, 4), (3, 5)]),
  note="upstream's answer list also holds the two runs of the history; here only new proposals")
G("with_list_values", sweeps_test(TG, "test_grid_search_with_list_values"),
  {"method": "grid", "parameters": {"v1": {"values": ["", [9, 5]]}, "v2": {"values": [256, 512]}}},
  stated=pairs([("", 256), ("", 512), ([9, 5], 256), ([9, 5], 512)]))
G("duplicated_values_not_duplicated", sweeps_test(TG, "test_grid_search_duplicated_values_are_not_duplicated_in_answer"),
  {"method": "grid", "parameters": {"v1": {"values": [None, 2, 3, "a", [2, 3], 3]},
                                    "v2": {"values": ["a", "b", "c'"]}}},
  stated=pairs([(None, "a"), (2, "a"), (3, "a"), ("a", "a"), ((2, 3), "a"), (None, "b"), (2, "b"),
                (3, "b"), ((2, 3), "b"), ("a", "b"), (None, "c'"), (2, "c'"), (3, "c'"),
                ((2, 3), "c'"), ("a", "c'")]),
  note="15 points: the repeated 3 is proposed once. Upstream has the tuple (2, 3); here [2, 3]")
G("constant_val_is_propagated", sweeps_test(TG, "test_grid_search_constant_val_is_propagated"),
  {"method": "grid", "parameters": {"v1": {"values": ["a", "b", "c'"]}, "v2": {"value": 1}}},
  stated=pairs([("a", 1), ("b", 1), ("c'", 1)]),
  note="upstream asserts v1 and v2 are in the first proposal; the full list is from W&B's code")
G("constant_vals_only", sweeps_test(TG, "test_grid_search_constant_vals_only"),
  {"method": "grid", "parameters": {"v1": {"value": "a"}, "v2": {"value": "b"}}},
  stated=pairs([("a", "b")]))
G("dict_val_is_propagated", sweeps_test(TG, "test_grid_search_dict_val_is_propagated"),
  {"method": "grid", "parameters": {"v1": {"values": ["a", "b", "c'"]},
                                    "v2": {"values": [{"a": "b"}, {"c": "d", "b": "g"}, {"e": {"f": "g"}},
                                                      {"a": "b"}, {"b": "g", "c": "d"}]}}},
  stated=pairs([(x, y) for x in ["a", "b", "c'"] for y in [{"a": "b"}, {"c": "d", "b": "g"}, {"e": {"f": "g"}}]]),
  note="9 points: {'c': 'd', 'b': 'g'} and {'b': 'g', 'c': 'd'} are the same value to W&B "
       "(yaml_hash dumps with sort_keys=True), and {'a': 'b'} twice is one value")
G("anaconda1_order", sweeps_test(TG, "test_grid_search_anaconda1_order"),
  {"method": "grid", "parameters": {"v1": {"values": ["a", "b", "c", "a"]}, "v2": {"values": [1, 2, 3]}}},
  stated=pairs([(x, y) for x in "abc" for y in [1, 2, 3]]), check_order=True,
  note="upstream checks the order: first parameter slowest, duplicate 'a' skipped")
G("int_uniform_bounded", sweeps_test(TG, "test_int_uniform_bounded_grid_search"),
  {"method": "grid", "parameters": {"v1": {"distribution": "int_uniform", "min": -52, "max": 10},
                                    "v2": {"value": "test"}}},
  stated=pairs([(v, "test") for v in range(-52, 11)]))
G("q_uniform_bounded", sweeps_test(TG, "test_q_uniform_bounded_grid_search"),
  {"method": "grid", "parameters": {"v1": {"distribution": "q_uniform", "min": -9.211, "max": 23.23, "q": 2.341},
                                    "v2": {"value": "test"}}},
  stated=pairs([(v, "test") for v in np.arange(-9.211, 23.23, 2.341).tolist()]),
  note="W&B: np.arange(min, max, q): min + k*q for k = 0.. while < max (14 values, max excluded); "
       "not multiples of q")
NESTED = {"method": "grid", "metric": {"goal": "minimize", "name": "loss"},
          "command": ["${env}", "python3", "-m", "hellowsweep"], "project": "sweep_test",
          "parameters": {"p1": {"values": ["a", "b", "c"]},
                         "p2": {"parameters": {"n1": {"values": [0.01, 0.001]}, "n2": {"value": 0.9},
                                               "n3": {"values": [1, 2, 3]}}}},
          "description": "hellosweep: A sample program for getting started with wandb sweeps."}
G("nested_grid_search_advances", sweeps_test(TG, "test_nested_grid_search_advances"), NESTED,
  history=[{"p1": {"value": "a"}, "p2": {"value": {"n1": 0.01, "n2": 0.9, "n3": 1}}}],
  check_order=True,
  note="upstream asserts the next proposal differs from the run in the history (the run's "
       "_wandb key is left out here); the list and its order are from W&B's code")
G("matches_integer_float_values", sweeps_test(TG, "test_grid_search_matches_integer_float_values"),
  {"method": "grid", "parameters": {"v1": {"values": [3000000, "next"]}, "v2": {"value": "test"}}},
  history=[{"v1": {"value": 3000000.0}, "v2": {"value": "test"}}], next_only=True,
  stated_next={"v1": "next", "v2": "test"},
  note="a run's 3000000.0 covers the grid value 3000000 (yaml_hash turns integral floats into ints)")
G("keeps_bool_and_int_distinct", sweeps_test(TG, "test_grid_search_keeps_bool_and_int_values_distinct"),
  {"method": "grid", "parameters": {"v1": {"values": [True, 1]}, "v2": {"value": "test"}}},
  history=[{"v1": {"value": True}, "v2": {"value": "test"}}], next_only=True,
  stated_next={"v1": 1, "v2": "test"})
G("matches_nan_values", sweeps_test(TG, "test_grid_search_matches_nan_values"),
  {"method": "grid", "parameters": {"v1": {"values": [float("nan"), 1]}, "v2": {"value": "test"}}},
  history=[{"v1": {"value": float("nan")}, "v2": {"value": "test"}}],
  history_json=[{"v1": {"value": {"__float__": "nan"}}, "v2": {"value": "test"}}],
  config_yaml="method: grid\nparameters:\n  v1: {values: [.nan, 1]}\n  v2: {value: test}\n",
  next_only=True, stated_next={"v1": 1, "v2": "test"},
  note="NaN is a grid value; a run with NaN covers it. JSON has no NaN: the config is YAML and "
       "the history's NaN is written {\"__float__\": \"nan\"}")
G("matches_dict_regardless_of_key_order", sweeps_test(TG, "test_grid_search_matches_dict_values_regardless_of_key_order"),
  {"method": "grid", "parameters": {"v1": {"values": [{"a": 1, "b": 2}, {"a": 3, "b": 4}]}, "v2": {"value": "test"}}},
  history=[{"v1": {"value": {"b": 2, "a": 1}}, "v2": {"value": "test"}}], next_only=True,
  stated_next={"v1": {"a": 3, "b": 4}, "v2": "test"})
ENV2 = [{"env_id": "Env-v0", "max_steps": 1000}, {"env_id": "Env-v1", "max_steps": 2000}]
G("dict_param_with_injected_key", sweeps_test(TG, "test_dict_valued_param_with_injected_key"),
  {"method": "grid", "parameters": {"env_params": {"values": ENV2}}},
  history=[{"env_params": {"value": {"env_id": "Env-v0", "max_steps": 1000, "env_name": "SAC_abc123"}}},
           {"env_params": {"value": {"env_id": "Env-v1", "max_steps": 2000, "env_name": "SAC_def456"}}}],
  next_only=True, stated_next=None,
  note="keys a run added to a dict value (not in any grid value) are ignored when matching")
G("dict_param_without_injection", sweeps_test(TG, "test_dict_valued_param_without_injection"),
  {"method": "grid", "parameters": {"env_params": {"values": ENV2}}},
  history=[{"env_params": {"value": dict(ENV2[0])}}, {"env_params": {"value": dict(ENV2[1])}}],
  next_only=True, stated_next=None)
ENV3 = ENV2 + [{"env_id": "Env-v2", "max_steps": 3000}]
G("dict_param_missing_run_still_suggested", sweeps_test(TG, "test_dict_valued_param_missing_run_still_suggested"),
  {"method": "grid", "parameters": {"env_params": {"values": ENV3}}},
  history=[{"env_params": {"value": {"env_id": "Env-v0", "max_steps": 1000, "env_name": "SAC_abc"}}},
           {"env_params": {"value": {"env_id": "Env-v2", "max_steps": 3000, "env_name": "SAC_def"}}}],
  next_only=True, stated_next={"env_params": ENV3[1]})
G("dict_param_multiple_injected_keys", sweeps_test(TG, "test_dict_valued_param_multiple_injected_keys"),
  {"method": "grid", "parameters": {"env_params": {"values": [{"env_id": "Env-v0", "reward_scale": 0.5}]}}},
  history=[{"env_params": {"value": {"env_id": "Env-v0", "reward_scale": 0.5, "env_name": "SAC_run1",
                                     "created_at": "2026-03-27", "internal_id": 42}}}],
  next_only=True, stated_next=None)
G("scalar_param_unaffected", sweeps_test(TG, "test_scalar_param_unaffected"),
  {"method": "grid", "parameters": {"learning_rate": {"values": [0.001, 0.01, 0.1]}}},
  history=[{"learning_rate": {"value": 0.001}}, {"learning_rate": {"value": 0.01}}],
  next_only=True, stated_next={"learning_rate": 0.1})
G("scalar_param_all_covered", sweeps_test(TG, "test_scalar_param_all_covered"),
  {"method": "grid", "parameters": {"batch_size": {"values": [16, 32, 64]}}},
  history=[{"batch_size": {"value": v}} for v in (16, 32, 64)], next_only=True, stated_next=None)
G("mixed_scalar_and_dict_params", sweeps_test(TG, "test_mixed_scalar_and_dict_params"),
  {"method": "grid", "parameters": {"algorithm": {"value": "SAC"}, "env_params": {"values": ENV2}}},
  history=[{"algorithm": {"value": "SAC"}, "env_params": {"value": dict(ENV2[0], env_name="SAC_abc")}},
           {"algorithm": {"value": "SAC"}, "env_params": {"value": dict(ENV2[1], env_name="SAC_def")}}],
  next_only=True, stated_next=None)
G("nested_dict_value_with_injected_key", sweeps_test(TG, "test_nested_dict_value_with_injected_key"),
  {"method": "grid", "parameters": {"env_params": {"values": [{"env_id": "Env-v0", "reward_kwargs": {"lambda_energy": 0.001}}]}}},
  history=[{"env_params": {"value": {"env_id": "Env-v0", "reward_kwargs": {"lambda_energy": 0.001},
                                     "env_name": "SAC_injected"}}}],
  next_only=True, stated_next=None)
G("empty_runs_suggests_first_grid_point", sweeps_test(TG, "test_empty_runs_suggests_first_grid_point"),
  {"method": "grid", "parameters": {"env_params": {"values": ENV2}}},
  next_only=True, stated_next={"env_params": ENV2[0]})
# Derived from W&B's code.
G("order_follows_sorted_names", sweeps_code("src/sweeps/params.py", "for key, val in sorted(d.items()):",
                                            "parameters are taken in sorted name order; itertools.product varies the last fastest"),
  {"method": "grid", "parameters": {"zeta": {"values": [1, 2]}, "alpha": {"values": ["x", "y"]}}},
  check_order=True, note="spec order is zeta, alpha; W&B enumerates alpha slowest")
G("q_uniform_integer_q_excludes_max", sweeps_code("src/sweeps/grid_search.py", "np.arange(", "q_uniform grid values"),
  {"method": "grid", "parameters": {"v": {"distribution": "q_uniform", "min": 0, "max": 10, "q": 2}}},
  check_order=True, note="np.arange(0, 10, 2) = [0, 2, 4, 6, 8]: max is never a grid value")
G("q_uniform_default_q", sweeps_code("src/sweeps/grid_search.py", "np.arange(", "q_uniform grid values"),
  {"method": "grid", "parameters": {"v": {"distribution": "q_uniform", "min": 0.5, "max": 3}}},
  check_order=True, note="q defaults to 1.0: np.arange(0.5, 3, 1.0) = [0.5, 1.5, 2.5]")
G("integer_float_duplicate_values", sweeps_code("src/sweeps/grid_search.py", "if value.is_integer():", "yaml_hash"),
  {"method": "grid", "parameters": {"v": {"values": [3, 3.0, 4]}}}, check_order=True,
  note="3 and 3.0 hash the same: one grid point")
G("dotted_name_beside_parent", sweeps_code("src/sweeps/params.py", "NESTING_DELIMITER: str =", "dots in names do not nest"),
  {"method": "grid", "parameters": {"a": {"values": [1, 2]}, "a.b": {"values": [3]}}}, check_order=True)

write("grid.json", GRID)


# ---------------------------------------------------------------------------------------------
# hyperband.json: which running runs W&B's stop_runs stops, given complete histories.

HYPERBAND = []
HYPER_DATA = yaml.safe_load(open(os.path.join(ARGS.sweeps, "tests", "data", "hyper-data.yaml")))["data"]
HYPER_DATA = [[d["metric"] for d in run] for run in HYPER_DATA]


def _wandb_history(metric, values, nan_as="NaN"):
    return [{metric: (nan_as if v == "nan" else v)} for v in values]


def wandb_stop(config, runs, nan_as="NaN"):
    metric = config["metric"]["name"]
    sruns = [SweepRun(name=r["name"], state=RunState(r["state"]),
                      history=_wandb_history(metric, r["history"], nan_as)) for r in runs]
    stopped = [r.name for r in stop_runs(copy.deepcopy(config), sruns)]
    # A running run with no history changes nothing (no band applies to it, and W&B leaves
    # empty histories out of the thresholds); it only carries W&B's bands and thresholds out.
    probe = SweepRun(name="probe", state=RunState.running, history=[])
    again = hyperband_stop_runs(sruns + [probe], copy.deepcopy(config))
    assert [r.name for r in again] == stopped
    return stopped, probe.early_terminate_info["bands"], probe.early_terminate_info["thresholds"]


def H(id, upstream, config, runs=None, stated=None, stated_bands=None, bands_prefix=None, note="",
      data_stage=None):
    if data_stage is not None:
        runs = [{"name": str(i), "state": "running", "history": HYPER_DATA[i][:data_stage["truncate"]]}
                for i in data_stage["run_indices"]]
    stopped, bands, thresholds = wandb_stop(config, runs)
    if any("nan" in r["history"] for r in runs):
        assert wandb_stop(config, runs, nan_as=float("nan"))[0] == stopped  # float NaN: same
    if stated is not None:
        if callable(stated):
            stated(stopped)
        else:
            assert stopped == stated, (id, stopped, stated)
    if stated_bands is not None:
        assert bands[: len(stated_bands)] == stated_bands, (id, bands)
    case = {"id": id, "upstream": upstream, "config": config}
    if data_stage is not None:
        case["histories_file"] = "hyper_data.json"
        case["truncate"] = data_stage["truncate"]
        case["run_indices"] = data_stage["run_indices"]
        case["runs_state"] = "running"
    else:
        case["runs"] = runs
    case["expected_stopped"] = stopped
    if bands_prefix is None and "max_iter" not in config["early_terminate"]:
        bands_prefix = 5  # from min_iter W&B lists 100 bands; the first few are what matter
    if bands_prefix:
        case["expected_bands_prefix"] = bands[:bands_prefix]
    else:
        case["expected_bands"] = bands
    # W&B's threshold at each band (null: no run reached it), for reading failures.
    case["wandb_thresholds"] = [None if math.isinf(t) else t for t in thresholds][: len(
        case.get("expected_bands", case.get("expected_bands_prefix")))]
    if note:
        case["note"] = note
    HYPERBAND.append(case)
    return stopped


TH = "test_hyperband_stopping.py"
LOSS = {"name": "loss", "goal": "minimize"}
A123 = {"a": {"values": [1, 2, 3]}}


def two_runs(h1, h2):
    return [{"name": "run", "state": "running", "history": h1},
            {"name": "run2", "state": "running", "history": h2}]


H("min_iter_bands", sweeps_test(TH, "test_hyperband_min_iter_bands"),
  {"method": "grid", "metric": LOSS, "early_terminate": {"type": "hyperband", "min_iter": 3, "eta": 3},
   "parameters": A123},
  two_runs([10] * 4, [10 - i for i in range(10)]), stated=["run"], stated_bands=[3, 9, 27], bands_prefix=3)
H("min_iter_bands_max", sweeps_test(TH, "test_hyperband_min_iter_bands_max"),
  {"method": "grid", "metric": {"name": "accuracy", "goal": "maximize"},
   "early_terminate": {"type": "hyperband", "min_iter": 3, "eta": 3}, "parameters": A123},
  two_runs([10] * 4, [10 + i for i in range(10)]), stated=["run"], stated_bands=[3, 9, 27], bands_prefix=3)
H("max_iter_bands", sweeps_test(TH, "test_hyperband_max_iter_bands"),
  {"method": "grid", "metric": LOSS, "early_terminate": {"type": "hyperband", "max_iter": 81, "eta": 3, "s": 3},
   "parameters": A123},
  two_runs([10] * 4, [10 - i for i in range(10)]), stated=["run"], stated_bands=[3, 9, 27])
H("init_from_max_iter", sweeps_test(TH, "test_init_from_max_iter"),
  {"method": "grid", "metric": LOSS, "early_terminate": {"type": "hyperband", "max_iter": 18, "eta": 3, "s": 2},
   "parameters": A123},
  two_runs([10] * 4, [10 - i for i in range(10)]), stated=["run"], stated_bands=[2, 6])
H("single_run", sweeps_test(TH, "test_single_run"),
  {"method": "grid", "metric": LOSS,
   "early_terminate": {"type": "hyperband", "max_iter": 18, "eta": 3, "s": 2, "strict": False},
   "parameters": A123},
  [{"name": "run", "state": "running", "history": [10 - i for i in range(10)]}], stated=[])
H("two_runs_band1_pass", sweeps_test(TH, "test_2runs_band1_pass"),
  {"method": "grid", "metric": LOSS,
   "early_terminate": {"type": "hyperband", "max_iter": 18, "eta": 3, "s": 2, "strict": False},
   "parameters": A123},
  two_runs([10, 10, 6], [10 - i for i in range(10)]), stated=[])
ET522 = {"method": "grid", "metric": LOSS, "early_terminate": {"type": "hyperband", "max_iter": 5, "eta": 2, "s": 2},
         "parameters": A123}
H("five_runs_band1_stop_2", sweeps_test(TH, "test_5runs_band1_stop_2"), ET522,
  [{"name": "a", "state": "finished", "history": [10, 9]},
   {"name": "b", "state": "running", "history": [10, 10]},
   {"name": "c", "state": "running", "history": [10, 8, 8]},
   {"name": "d", "state": "running", "history": [10, 7, 7]},
   {"name": "e", "state": "finished", "history": [10, 6, 6]}], stated=["b"])
H("five_runs_band1_stop_2_1st_no_band", sweeps_test(TH, "test_5runs_band1_stop_2_1stnoband"), ET522,
  [{"name": "a", "state": "finished", "history": [10]},
   {"name": "b", "state": "running", "history": [11]},
   {"name": "c", "state": "running", "history": [10, 8, 8]},
   {"name": "d", "state": "running", "history": [10, 7, 7]},
   {"name": "e", "state": "finished", "history": [10, 6, 6]}], stated=["b", "c"])
H("eta_3", sweeps_test(TH, "test_eta_3"),
  {"method": "grid", "metric": LOSS,
   "early_terminate": {"type": "hyperband", "max_iter": 9, "eta": 3, "s": 2, "strict": False},
   "parameters": A123},
  [{"name": "a", "state": "finished", "history": [9, 8]},
   {"name": "b", "state": "running", "history": [11, 11]},
   {"name": "c", "state": "running", "history": [10, 8, 3]},
   {"name": "d", "state": "running", "history": [10, 7, 4]},
   {"name": "e", "state": "running", "history": [10, 6, 6]}], stated=["b", "e"],
  note="upstream comment: bands are at 1 and 3, thresholds are 7 and 4 (W&B's own info says 10 and 4)")
H("eta_3_max", sweeps_test(TH, "test_eta_3_max"),
  {"method": "grid", "metric": {"name": "loss", "goal": "maximize"},
   "early_terminate": {"type": "hyperband", "max_iter": 9, "eta": 3, "s": 2, "strict": False},
   "parameters": A123},
  [{"name": "a", "state": "finished", "history": [-10, -9]},
   {"name": "b", "state": "running", "history": [-11, -11]},
   {"name": "c", "state": "running", "history": [-10, -8, -5, -3]},
   {"name": "d", "state": "running", "history": [-10, -6, -2]},
   {"name": "e", "state": "running", "history": [-10, -6, -6, -6]}], stated=["b", "e"])

# test_hyperband_runs_with_nan_metrics: histories read from the upstream source itself.
_src = open(os.path.join(ARGS.sweeps, "tests", TH)).read()
_fn = next(n for n in ast.parse(_src).body
           if isinstance(n, ast.FunctionDef) and n.name == "test_hyperband_runs_with_nan_metrics")
_runs_node = next(n for n in _fn.body if isinstance(n, ast.Assign) and n.targets[0].id == "runs")
_cfg_node = next(n for n in _fn.body if isinstance(n, ast.Assign) and n.targets[0].id == "config")
NAN_RUNS = []
for call in _runs_node.value.elts:
    kw = {k.arg: k for k in call.keywords}
    state = kw["state"].value.attr
    hist = [ast.literal_eval(d.values[0]) for d in kw["history"].value.elts]
    NAN_RUNS.append({"name": ast.literal_eval(kw["name"].value), "state": state,
                     "history": ["nan" if h == "NaN" else h for h in hist]})
NAN_CONFIG = ast.literal_eval(_cfg_node.value)
H("runs_with_nan_metrics", sweeps_test(TH, "test_hyperband_runs_with_nan_metrics"), NAN_CONFIG, NAN_RUNS,
  stated=[], note="upstream logs the string 'NaN'; W&B drops every entry that is not a finite number "
                  "(float NaN and inf too) before indexing, so run c has a 1-entry history")

RELAXED = {"method": "bayes", "metric": {"name": "metric", "goal": "maximize"},
           "early_terminate": {"type": "hyperband", "min_iter": 30, "eta": 1.5, "strict": False},
           "parameters": {"a": {"values": [1, 2]}}}
alive = list(range(len(HYPER_DATA)))
stopped_all = set()
for stage, (trunc, count) in enumerate([(32, 15), (47, 10), (None, 5)], 1):
    def check(stopped, count=count):
        assert len(stopped) == count, (len(stopped), count)
    stopped = H(f"extensive_relaxed_stage{stage}",
                sweeps_test(TH, "test_hyperband_extensive_relaxed", f", stage {stage}: len(stopped) == {count}"),
                RELAXED, stated=check, bands_prefix=3,
                data_stage={"truncate": trunc if trunc else 100, "run_indices": list(alive)},
                note="runs: hyper_data.json[i][:truncate] for i in run_indices (the runs no earlier "
                     "stage stopped); upstream asserts only the count, the set is from W&B's code")
    stopped_all |= set(stopped)
    alive = [i for i in alive if str(i) not in stopped_all]
assert len(stopped_all) == 30

STRICT = {"method": "bayes", "metric": {"name": "metric", "goal": "maximize"},
          "early_terminate": {"type": "hyperband", "min_iter": 30, "eta": 1.5, "strict": True},
          "parameters": {"a": {"values": [1, 2]}}}
alive = list(range(len(HYPER_DATA)))
stopped_all = set()
total_correct = 0
for stage, band in enumerate([30, 45, 67], 1):
    n_runs = len(alive)
    stopped = H(f"extensive_strict_stage{stage}",
                sweeps_test(TH, "test_hyperband_extensive_strict", f"[forward], band {band}"),
                STRICT, bands_prefix=3,
                data_stage={"truncate": band + 5, "run_indices": list(alive)},
                note="runs: hyper_data.json[i][:band + 5]; upstream only asserts the total stopped "
                     "over three stages is int(n * (1 - 1/eta)) summed, +-1; the set is from W&B's code")
    total_correct += int(n_runs * (1 - 1 / 1.5))
    stopped_all |= set(stopped)
    alive = [i for i in alive if str(i) not in stopped_all]
assert abs(len(stopped_all) - total_correct) <= 1, (len(stopped_all), total_correct)

# Derived: where W&B reads the history, and NaN.
H("band_reads_value_at_index_band_minus_1",
  sweeps_code("src/sweeps/hyperband_stopping.py", "band_values = [h[band - 1]", "threshold from h[band - 1]"),
  {"method": "random", "metric": LOSS, "early_terminate": {"type": "hyperband", "min_iter": 2, "eta": 2},
   "parameters": A123},
  [{"name": "good", "state": "finished", "history": [5, 1, 1]},
   {"name": "late", "state": "running", "history": [5, 9, 0]},
   {"name": "ok", "state": "running", "history": [5, 2]}],
  note="bands 2, 4, ...; at band 2 W&B takes h[1] (9 for 'late', 2 for 'ok'), threshold "
       "sorted([1, 9, 2])[int(3/2)] = 2: 'late' (strict: its h[1] = 9 > 2) stops; 'ok' (2, not > 2) "
       "does not. 'ok' has exactly 2 values: it is judged at band 2 already (band <= len(history))")
H("nan_entries_are_dropped_before_indexing",
  sweeps_code("src/sweeps/run.py", "and not (filter_invalid and not is_number(d[metric_name]))",
              "metric_history(filter_invalid=True)"),
  {"method": "random", "metric": LOSS, "early_terminate": {"type": "hyperband", "min_iter": 2, "eta": 2},
   "parameters": A123},
  [{"name": "ref1", "state": "finished", "history": [3, 1, 1]},
   {"name": "ref2", "state": "finished", "history": [3, 2, 2]},
   {"name": "gappy", "state": "running", "history": [3, "nan", "nan", 1.5]}],
  note="'gappy' has history [3, 1.5] after W&B drops NaN: band 2 reads 1.5 <= threshold "
       "sorted([1, 2, 1.5])[1] = 1.5, so it keeps running")
H("nan_only_after_first_value",
  sweeps_code("src/sweeps/run.py", "np.isfinite(x)", "is_number: NaN/inf are not numbers"),
  {"method": "random", "metric": LOSS, "early_terminate": {"type": "hyperband", "min_iter": 2, "eta": 2},
   "parameters": A123},
  [{"name": "ref1", "state": "finished", "history": [3, 1, 1]},
   {"name": "ref2", "state": "finished", "history": [3, 2, 2]},
   {"name": "diverged", "state": "running", "history": [3, "nan", "nan", "nan"]}],
  note="'diverged' has one finite value: no band applies, W&B does not stop it")

write("hyperband.json", HYPERBAND)
with open(os.path.join(ARGS.out, "hyper_data.json"), "w") as f:
    json.dump(HYPER_DATA, f, separators=(",", ":"))
    f.write("\n")


# ---------------------------------------------------------------------------------------------
# command.json: the argv W&B's agent runs.
#
# Runs wandb/wandb's own create_sweep_command and create_sweep_command_args (taken from
# wandb/sdk/launch/sweeps/utils.py) and the agent's loop over the command items (taken from
# Agent._command_run in wandb/wandb_agent.py), with the values the agent sets there:
# interpreter 'python', env '/usr/bin/env' (not Windows), program = command['program'].

UTILS_PATH = "wandb/sdk/launch/sweeps/utils.py"
AGENT_PATH = "wandb/wandb_agent.py"
_utils_src = open(os.path.join(ARGS.wandb, UTILS_PATH)).read()
_utils_tree = ast.parse(_utils_src)
_ns = {"os": os, "json": json, "re": re, "Any": object}
for node in _utils_tree.body:
    if isinstance(node, ast.Assign) and any(getattr(t, "id", "") in ("DEFAULT_SWEEP_COMMAND", "SWEEP_COMMAND_ENV_VAR_REGEX")
                                            for t in node.targets):
        exec(compile(ast.Module([node], []), UTILS_PATH, "exec"), _ns)
    if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") in ("DEFAULT_SWEEP_COMMAND",):
        exec(compile(ast.Module([node], []), UTILS_PATH, "exec"), _ns)
    if isinstance(node, ast.FunctionDef) and node.name in ("create_sweep_command", "create_sweep_command_args"):
        node.returns = None
        for a in node.args.args:
            a.annotation = None
        exec(compile(ast.Module([node], []), UTILS_PATH, "exec"), _ns)
_agent_tree = ast.parse(open(os.path.join(ARGS.wandb, AGENT_PATH)).read())
_cmd_run = next(n for n in ast.walk(_agent_tree) if isinstance(n, ast.FunctionDef) and n.name == "_command_run")
_loop = next(n for n in ast.walk(_cmd_run) if isinstance(n, ast.For) and getattr(n.iter, "id", "") == "sweep_command")
_loop_code = compile(ast.Module([_loop], []), AGENT_PATH, "exec")


def wandb_argv(command, args, env, program, args_json_file):
    old = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        sweep_command = _ns["create_sweep_command"](copy.deepcopy(command) if command else None)
        sweep_vars = _ns["create_sweep_command_args"]({"args": copy.deepcopy(args)})
    finally:
        os.environ.clear()
        os.environ.update(old)
    sweep_vars["interpreter"] = ["python"]
    sweep_vars["program"] = [program]
    sweep_vars["args_json_file"] = [args_json_file]
    sweep_vars["env"] = ["/usr/bin/env"]
    scope = {"sweep_command": sweep_command, "sweep_vars": sweep_vars, "command_list": []}
    exec(_loop_code, scope)
    return scope["command_list"], sweep_vars


COMMAND = []
JSON_FILE = "/tmp/wandb/sweep-abc/config-run.json"
AGENT_REF = wandb_code(AGENT_PATH, "for c in sweep_command:", "the agent's loop over command items")


def CMD(id, upstream, command, args, parameters=None, env=None, program="train.py", stated=None,
        note="", config=None):
    env = env or {}
    argv, sweep_vars = wandb_argv(command, args, env, program, JSON_FILE)
    if stated is not None:
        assert argv == stated, (id, argv, stated)
    case = {"id": id, "upstream": upstream}
    if config is not None:
        case["config"] = config
    else:
        case["command"] = command
    case["args"] = args
    if parameters is not None:
        case["parameters"] = parameters
    case["env"] = env
    case["agent"] = {"env": "/usr/bin/env", "interpreter": "python", "program": program,
                     "args_json_file": JSON_FILE}
    case["expected_argv"] = argv
    if command and "${args_json_file}" in command:
        case["expected_args_json_file_content"] = json.loads(sweep_vars["args_json"][0])
    if stated is None:
        case["expected_from"] = AGENT_REF
    if note:
        case["note"] = note
    COMMAND.append(case)


AGENT_TEST = "tests/system_tests/test_sweep/test_wandb_agent.py"
ABCD = {"a": {"value": True}, "b": {"value": False}, "c": {"value": 1}, "d": {"value": None}}
_stated_macros = {
    "args": ["--a=True", "--b=False", "--c=1", "--d=None"],
    "args_no_hyphens": ["a=True", "b=False", "c=1", "d=None"],
    "args_no_boolean_flags": ["--a", "--c=1", "--d=None"],
    "args_json": ['{"a": true, "b": false, "c": 1, "d": null}'],
    "args_append_hydra": ["+a=True", "+b=False", "+c=1", "+d=None"],
    "args_override_hydra": ["++a=True", "++b=False", "++c=1", "++d=None"],
    "args_no_equals": None,
}
for macro, stated in _stated_macros.items():
    CMD(f"create_command_args_{macro}", wandb_test(AGENT_TEST, "test_agent_create_command_args", f", {macro}"),
        ["${" + macro + "}"], ABCD, stated=stated,
        note="upstream asserts create_sweep_command_args' list; a command of that one macro "
             "expands to exactly it" + ("" if stated is not None else
                                         " (upstream does not assert args_no_equals; from utils.py)"))
CMD("create_sweep_command_envvars", wandb_test(AGENT_TEST, "test_agent_create_sweep_command"),
    ["${env}", "${interpreter}", "--output_dir",
     "fake/path/${envvar:FOO_DIR}/${envvar:FOO_DIR}/${envvar:FOO_DIR_TWO}", "--foovar", "${envvar:FOO_VAR}"],
    {}, env={"FOO_DIR": "foo_dir", "FOO_DIR_TWO": "foo_dir_two", "FOO_VAR": "foo_var"},
    note="upstream asserts create_sweep_command's output (envvars replaced, ${env} and "
         "${interpreter} kept); the argv is after the agent's loop")
CMD("default_command", wandb_test(AGENT_TEST, "test_agent_create_sweep_command", ", default command"),
    None, {"lr": {"value": 0.01}, "epochs": {"value": 3}},
    config={"method": "random", "program": "train.py", "parameters": {"lr": {"values": [0.01]}, "epochs": {"value": 3}}},
    note="no command in the config: W&B's DEFAULT_SWEEP_COMMAND ${env} ${interpreter} ${program} ${args}")
CMD("args_json_file", wandb_test("tests/unit_tests/test_wandb_agent/test_cli_agent.py",
                                 "test_agent_writes_args_json_file_under_wandb_dir"),
    ["${args_json_file}"], {"param1": {"value": 1}}, stated=[JSON_FILE],
    note="upstream: the argv is [path] and the file holds {'param1': 1}")
CMD("whitespace_values", wandb_test("tests/unit_tests/test_wandb_agent/test_cli_agent.py",
                                    "test_agent_config_whitespace_cli_agent"),
    None, {"a": {"value": "one two"}, "b": {"value": "three four"}},
    config={"name": "My Sweep", "program": "test.py", "method": "grid",
            "parameters": {"a": {"values": ["one two"]}, "b": {"value": "three four"}}},
    program="test.py",
    note="upstream runs the script and asserts wandb.config; the argv is from the agent's code: "
         "values with spaces stay one argv item")
CMD("nested_params_args", wandb_code(UTILS_PATH, '_flag: str = f"{param}={_value}"', "one flag per top-level key, str() of the value"),
    ["${args}"], {"a": {"value": {"b": 1, "c": {"d": 2}}}, "b": {"value": 2}},
    parameters={"a": {"parameters": {"b": {"value": 1}, "c": {"parameters": {"d": {"value": 2}}}}},
                "b": {"values": [2, 3]}},
    note="sweep config and run config of test_validation.py test_param_dict (2nd config): "
         "a nested group reaches the program as one --a=<Python dict>")
CMD("nested_params_args_json", wandb_code(UTILS_PATH, '"args_json": [json.dumps(flags_dict)]'),
    ["${args_json}"], {"a": {"value": {"b": 1, "c": {"d": 2}}}, "b": {"value": 2}},
    parameters={"a": {"parameters": {"b": {"value": 1}, "c": {"parameters": {"d": {"value": 2}}}}},
                "b": {"values": [2, 3]}})
CMD("nested_params_args_no_hyphens", wandb_code(UTILS_PATH, "flags_no_hyphens.append(_flag)"),
    ["${args_no_hyphens}"], {"p1": {"value": "a"}, "p2": {"value": {"n1": 0.01, "n2": 0.9, "n3": 1}}},
    parameters={"p1": {"values": ["a", "b", "c"]},
                "p2": {"parameters": {"n1": {"values": [0.01, 0.001]}, "n2": {"value": 0.9},
                                      "n3": {"values": [1, 2, 3]}}}},
    note="the nested sweep of test_grid_search.py test_nested_grid_search_advances")
CMD("value_formatting", wandb_code(UTILS_PATH, '_flag: str = f"{param}={_value}"', "str() of each value"),
    ["${args}"], {"f1": {"value": 1e-05}, "f2": {"value": 0.0001}, "f3": {"value": 3.0},
                  "f4": {"value": 1e16}, "f5": {"value": 123456789.125}, "l": {"value": [64, 64]},
                  "s": {"value": "it's"}, "d": {"value": {"k": "v", "n": None}}, "t": {"value": True}})
CMD("envvar_unset_keeps_name", wandb_code(UTILS_PATH, "_var: str = os.environ.get(m.group(1), m.group(1))",
                                          "an unset variable is replaced by its own name"),
    ["${envvar:SWEEPD_COMPAT_UNSET}", "--out=${envvar:SWEEPD_COMPAT_UNSET}/x"], {}, env={})
CMD("envvar_lowercase_not_a_macro", wandb_code(UTILS_PATH, 'SWEEP_COMMAND_ENV_VAR_REGEX = re.compile(r"\\$\\{envvar\\:([A-Z0-9_]*)\\}")',
                                               "only [A-Z0-9_]* names are substituted"),
    ["python", "--home=${envvar:home}", "${envvar:home}"], {}, env={"home": "/h"},
    note="'--home=${envvar:home}' stays literal; the whole-item '${envvar:home}' is an unknown "
         "macro to the agent's loop and expands to nothing")
CMD("project_entity_macros_dropped", AGENT_REF,
    ["${env}", "${interpreter}", "${program}", "--project", "${project}", "--entity", "${entity}", "${args}"],
    {"lr": {"value": 0.1}},
    note="the agent has no ${project}/${entity}: sweep_vars.get() is None and the item expands to nothing")
CMD("macros_only_as_whole_items", AGENT_REF,
    ["python", "--script=${program}", "--flags=${args}", "${program}.bak", "${args}"],
    {"lr": {"value": 0.1}},
    note="an item is a macro only when it starts with '${' and ends with '}'; others are literal")
CMD("non_string_items", AGENT_REF, ["python", "train.py", "--float", 1.99999, "--n", 3, "${args}"],
    {"lr": {"value": 0.1}},
    note="command items go through str() (wandb/wandb tests/system_tests/test_sweep/"
         "test_launch_scheduler.py:782 uses 1.99999)")
CMD("dotted_name_beside_parent", AGENT_REF, ["${args}"], {"a": {"value": 1}, "a.b": {"value": 2}},
    parameters={"a": {"values": [1]}, "a.b": {"values": [2]}})

write("command.json", COMMAND)


# ---------------------------------------------------------------------------------------------
# random.json: what W&B asserts about random samples, and W&B's own sampling law.
#
# Bounds and quantisation are the upstream assertions. For the histograms, upstream compares
# against numpy draws; here the reference counts are W&B's own sampler (HyperParameter.ppf) on
# 200000 evenly spaced quantiles, and the same 5-sigma rule applies.

RANDOM = []
TR = "test_random_search.py"


def ppf_counts(cfg, bins, n):
    hp = HyperParameter("v", cfg)
    u = (np.arange(200000) + 0.5) / 200000
    x = np.asarray(hp.ppf(u), dtype=float)
    counts, _ = np.histogram(x, bins=bins)
    return (counts / len(u) * n).tolist()


def R(id, upstream, cfg, n, bins=None, lo=None, hi=None, q=None, integer=None, categorical=None, note=""):
    case = {"id": id, "upstream": upstream,
            "config": {"method": "random", "parameters": {"v1": cfg}}, "param": "v1", "n": n}
    checks = {}
    if lo is not None:
        checks["min"] = lo
    if hi is not None:
        checks["max"] = hi
    if q is not None:
        checks["multiple_of"] = q
    if integer is not None:
        checks["integer"] = integer
    if categorical is not None:
        checks["categorical"] = categorical
    case["checks"] = checks
    if bins is not None:
        bins = [float(b) for b in bins]
        case["histogram"] = {"bins": bins, "expected_counts": ppf_counts(cfg, bins, n), "max_sigma": 5}
    if note:
        case["note"] = note
    RANDOM.append(case)


for values, probs in [(list(range(5)), [0.2] * 5), (list(range(3)), [0.5, 0.0, 0.5]),
                      (list(range(5)), [0.1, 0.25, 0.15, 0.2, 0.3])]:
    R(f"categorical_{len(values)}_{'_'.join(str(int(p * 100)) for p in probs)}",
      sweeps_test(TR, "test_rand_categorical", f"[{probs}]"),
      {"values": values, "probabilities": probs}, 1000,
      categorical={"values": values, "probabilities": probs, "max_sigma": 3},
      note="upstream: |count(v) - n*p| <= 3*sqrt(n*p) for every value (a value of probability 0 "
           "never appears)")
R("uniform", sweeps_test(TR, "test_rand_uniform"), {"min": 3.0, "max": 5.0}, 1000,
  bins=np.linspace(3.0, 5.0, 10), lo=3.0, hi=5.0)
R("normal", sweeps_test(TR, "test_rand_normal"), {"distribution": "normal"}, 1000, bins=np.linspace(-2, 2, 10))
R("log_normal", sweeps_test(TR, "test_rand_lognormal"), {"distribution": "log_normal", "mu": 2, "sigma": 3}, 1000,
  bins=np.logspace(-1, 5, 30))
R("log_uniform", sweeps_test(TR, "test_rand_loguniform"),
  {"min": float(np.log(5.0)), "max": float(np.log(100)), "distribution": "log_uniform"}, 1000,
  bins=np.logspace(np.log10(5.0), np.log10(100), 10), lo=5.0, hi=100.0,
  note="min/max are natural-log exponents (deprecated form; upstream does not validate here)")
R("log_uniform_values", sweeps_test(TR, "test_rand_loguniform_values"),
  {"min": 5.0, "max": 100, "distribution": "log_uniform_values"}, 1000,
  bins=np.logspace(np.log10(5.0), np.log10(100), 10), lo=5.0, hi=100.0)
R("inv_log_uniform", sweeps_test(TR, "test_rand_inv_loguniform"),
  {"min": float(np.log(1 / 1e20)), "max": float(np.log(1 / 1e-15)), "distribution": "inv_log_uniform"}, 20000,
  bins=np.logspace(-15, 20, 10), lo=1e-15, hi=1e20)
R("inv_log_uniform_values", sweeps_test(TR, "test_rand_inv_loguniform_values"),
  {"min": 1e-15, "max": 1e20, "distribution": "inv_log_uniform_values"}, 20000,
  bins=np.logspace(-15, 20, 10), lo=1e-15, hi=1e20)
for q in [0.1, 1, 10]:
    qn = str(q).replace(".", "_")
    R(f"q_log_normal_{qn}", sweeps_test(TR, "test_rand_q_lognormal", f"[{q}]"),
      {"distribution": "q_log_normal", "mu": 2, "sigma": 2, "q": q}, 1000,
      bins=np.logspace(np.log10(np.exp(-2)), np.log10(np.exp(6)), 10), q=q, integer=isinstance(q, int))
    R(f"q_normal_{qn}", sweeps_test(TR, "test_rand_q_normal", f"[{q}]"),
      {"distribution": "q_normal", "mu": 4, "sigma": 2, "q": q}, 1000, bins=np.linspace(0, 8, 10), q=q,
      integer=isinstance(q, int))
    R(f"q_uniform_{qn}", sweeps_test(TR, "test_rand_q_uniform", f"[{q}]"),
      {"distribution": "q_uniform", "min": 0, "max": 100, "q": q}, 1000, bins=np.linspace(0, 100, 10), q=q,
      integer=isinstance(q, int))
    R(f"q_log_uniform_values_{qn}", sweeps_test(TR, "test_rand_q_loguniform_values", f"[{q}]"),
      {"distribution": "q_log_uniform_values", "min": 0.1, "max": 100, "q": q}, 1000,
      bins=np.logspace(-1, 2, 10), q=q, integer=isinstance(q, int))
    R(f"q_log_uniform_{qn}", sweeps_test(TR, "test_rand_q_loguniform", f"[{q}]"),
      {"distribution": "q_log_uniform", "min": float(np.log(0.1)), "max": float(np.log(100)), "q": q}, 1000,
      bins=np.logspace(-1, 2, 10), q=q, integer=isinstance(q, int))
R("q_beta_0_1", sweeps_test(TR, "test_rand_q_beta", "[0.1]"), {"distribution": "q_beta", "a": 2, "b": 5, "q": 0.1}, 1000,
  bins=np.linspace(0, 1, 10), q=0.1, integer=False)
R("beta", sweeps_test(TR, "test_rand_beta"), {"distribution": "beta", "a": 2, "b": 5}, 1000,
  bins=np.linspace(0, 1, 10), lo=0.0, hi=1.0)
R("int_uniform", sweeps_code("src/sweeps/params.py", "stats.randint.ppf(x, self.config[\"min\"], self.config[\"max\"] + 1)",
                             "int_uniform: integers in [min, max]"),
  {"min": -3, "max": 3}, 1000, bins=np.arange(-3, 5), lo=-3, hi=3, integer=True)

write("random.json", RANDOM)
