"""Feeds the same learning curves, in the same asynchronous order, to Optuna's pruners and to
sweepd's (through prune_replay) and compares every decision.

Where the rules are the same by design (median, percentile, successive halving = ASHA) every
decision must match. Where they differ by design the difference is stated and sweepd's own
rule is asserted:
- Hyperband: Optuna and sweepd both split trials over ASHA brackets by Hyperband budgets, but
  each picks a trial's bracket with its own hash, so decisions are compared per bracket rule
  (ASHA, above), not trial by trial.
- NaN: both prune a NaN value at once; sweepd's percentile pruner leaves NaN values out of
  n_min_trials (Optuna counts them); the curves here have no NaN.

Usage: /usr/bin/python3 optuna_crosscheck.py PATH/TO/prune_replay
"""

import json
import random
import subprocess
import sys

import optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)


def curves(n_trials, n_steps, seed, maximize):
    rng = random.Random(seed)
    out = []
    for _ in range(n_trials):
        q = rng.random()
        curve = [q + 1.0 / (1 + t) + rng.gauss(0, 0.03) for t in range(n_steps)]
        out.append([-v for v in curve] if maximize else curve)
    return out


def run_optuna(pruner, values, maximize, workers=4):
    """Runs trials `workers` at a time, one step each per tick; returns the event list."""
    study = optuna.create_study(direction="maximize" if maximize else "minimize", pruner=pruner,
                                sampler=optuna.samplers.RandomSampler(seed=0))
    events, decisions = [], []
    pending = list(range(len(values)))
    active = {}  # worker -> (trial index, optuna trial, step)
    while pending or active:
        for w in range(workers):
            if w not in active and pending:
                i = pending.pop(0)
                active[w] = (i, study.ask(), 0)
        for w in sorted(list(active)):
            i, trial, step = active[w]
            value = values[i][step]
            trial.report(value, step)
            prune = trial.should_prune()
            events.append({"trial": i, "step": step, "value": value})
            decisions.append(prune)
            if prune:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                events.append({"trial": i, "end": "pruned"})
                del active[w]
            elif step + 1 == len(values[i]):
                study.tell(trial, value)
                events.append({"trial": i, "end": "completed"})
                del active[w]
            else:
                active[w] = (i, trial, step + 1)
    return events, decisions


def run_sweepd(tool, pruner_yaml, events, maximize):
    doc = {"pruner": pruner_yaml, "goal": "maximize" if maximize else "minimize",
           "events": events}
    out = subprocess.run([tool], input=json.dumps(doc), capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)["decisions"]


CASES = [
    ("median", lambda: optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=3,
                                                   interval_steps=2, n_min_trials=2),
     "{type: median, n_startup_trials: 5, n_warmup_steps: 3, interval_steps: 2, "
     "n_min_trials: 2}"),
    ("percentile-25", lambda: optuna.pruners.PercentilePruner(25.0, n_startup_trials=3,
                                                              n_warmup_steps=1),
     "{type: percentile, percentile: 25, n_startup_trials: 3, n_warmup_steps: 1}"),
    ("successive-halving/asha", lambda: optuna.pruners.SuccessiveHalvingPruner(
        min_resource=1, reduction_factor=3, min_early_stopping_rate=0),
     "{type: asha, min_resource: 1, reduction_factor: 3}"),
    ("successive-halving/asha, s=1", lambda: optuna.pruners.SuccessiveHalvingPruner(
        min_resource=2, reduction_factor=2, min_early_stopping_rate=1),
     "{type: asha, min_resource: 2, reduction_factor: 2, min_early_stopping_rate: 1}"),
]


def main():
    tool = sys.argv[1]
    failures = 0
    checked = 0
    for maximize in (False, True):
        for seed in (1, 2, 3):
            values = curves(60, 30, seed, maximize)
            for name, make, pruner_yaml in CASES:
                events, expected = run_optuna(make(), values, maximize)
                got = run_sweepd(tool, pruner_yaml, events, maximize)
                checked += len(expected)
                pruned = sum(expected)
                mismatches = [i for i, (a, b) in enumerate(zip(expected, got)) if a != b]
                if len(got) != len(expected) or mismatches:
                    failures += 1
                    print("MISMATCH %s seed=%d maximize=%s: %d of %d decisions differ (first at "
                          "%s)" % (name, seed, maximize, len(mismatches), len(expected),
                                   mismatches[:5]))
                else:
                    print("ok %s seed=%d maximize=%s: %d decisions, %d prunes, all equal"
                          % (name, seed, maximize, len(expected), pruned))
                if pruned == 0:
                    failures += 1
                    print("  (this case pruned nothing, so it shows nothing)")
    print("%d decisions compared; %d cases failed" % (checked, failures))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
