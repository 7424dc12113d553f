#!/usr/bin/env python3
"""PBT against random search on a real training, at equal compute (issue 17's proof).

For each seed, runs examples/pbt/sweep.yaml (population 8, 20 epochs each, a decision every 4
epochs), then the same search space with method random given the GPU-seconds pbt used
(`budget: {gpu_hours: ...}`; it proposes trials until they are spent, so it gets the copies'
process starts as extra trials). Each epoch takes at least EPOCH_SECONDS (default 1), standing
in for a real model's GPU time next to a process start. Each sweep runs with `sweepctl run`
(embedded scheduler and agent, 8 trials at once) and the trial interpreter from SWEEPD_PYTHON
(default /usr/bin/python3, which has torch and sklearn). Prints, per seed and on average, the
best validation loss each reached and the GPU-seconds (slot-seconds here) each used.

    python3 bench/pbt_digits.py [--sweepctl build/cli/sweepctl] [--seeds 0,1,2,3,4]
"""
import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(sweepctl, spec_text, folder):
    os.makedirs(folder, exist_ok=True)
    shutil.copy(os.path.join(ROOT, "examples", "pbt", "train.py"), folder)
    spec = os.path.join(folder, "sweep.yaml")
    with open(spec, "w") as f:
        f.write(spec_text)
    env = dict(os.environ)
    env.setdefault("SWEEPD_PYTHON", "/usr/bin/python3")
    env.setdefault("EPOCH_SECONDS", "1")
    env["PYTHONPATH"] = os.path.join(ROOT, "python") + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sweepctl, "run", spec, "--parallel", "8", "--no-http", "--db",
                          os.path.join(folder, "sweepd.db"), "--workdir",
                          os.path.join(folder, "work"), "--output", "json"],
                         env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.exit("sweepctl run failed (%d): %s" % (out.returncode, out.stderr[-2000:]))
    doc = json.loads(out.stdout)
    sweep = doc["sweep"]
    counts = sweep.get("counts", {})
    # Each trial's GPU-seconds, end and best val_loss, in the order they ended.
    db = sqlite3.connect(os.path.join(folder, "sweepd.db"))
    ended = db.execute(
        "SELECT t.gpu_seconds, t.end_us, m.min_value FROM trials t JOIN trial_metrics m "
        "ON m.trial_id = t.id JOIN metric_names n ON n.id = m.name_id AND n.name = 'val_loss' "
        "ORDER BY t.end_us").fetchall()
    db.close()
    return {"best": float(sweep["best_value"]), "gpu_seconds": float(sweep["gpu_seconds_used"]),
            "trials": sum(int(v) for v in counts.values()), "ended": ended}


def best_within(result, gpu_seconds):
    """The best val_loss of the trials that ended while the GPU-seconds spent stayed within
    `gpu_seconds` (random search given exactly what pbt used)."""
    spent, best = 0.0, float("inf")
    for seconds, _, value in result["ended"]:
        spent += seconds
        if spent > gpu_seconds * 1.0001:
            break
        best = min(best, value)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sweepctl", default=os.path.join(ROOT, "build", "cli", "sweepctl"))
    parser.add_argument("--seeds", default="0,1,2,3,4")
    args = parser.parse_args()
    with open(os.path.join(ROOT, "examples", "pbt", "sweep.yaml")) as f:
        pbt_spec = f.read()
    random_spec = (pbt_spec.replace("method: pbt", "method: random")
                   .replace("pbt:\n  population_size: 8\n  interval: 4\n", ""))
    assert "pbt:" not in random_spec
    rows = []
    with tempfile.TemporaryDirectory(prefix="pbt-bench-") as tmp:
        for seed in [int(s) for s in args.seeds.split(",")]:
            row = {"seed": seed}
            row["pbt"] = run(args.sweepctl, pbt_spec.replace("seed: 0", "seed: %d" % seed),
                             os.path.join(tmp, "pbt-%d" % seed))
            budget = "budget: {gpu_hours: %.6f}\n" % (row["pbt"]["gpu_seconds"] / 3600)
            row["random"] = run(args.sweepctl,
                                random_spec.replace("seed: 0", "seed: %d\n%s" % (seed, budget)),
                                os.path.join(tmp, "random-%d" % seed))
            row["random"]["at_equal"] = best_within(row["random"], row["pbt"]["gpu_seconds"])
            rows.append(row)
            print("seed %d  pbt best val_loss %.4f (%d trials, %.0f GPU-s)  random %.4f within "
                  "the same GPU-s (%.4f with all its %d trials, %.0f GPU-s)" % (
                      seed, row["pbt"]["best"], row["pbt"]["trials"], row["pbt"]["gpu_seconds"],
                      row["random"]["at_equal"], row["random"]["best"], row["random"]["trials"],
                      row["random"]["gpu_seconds"]), flush=True)
    wins = sum(r["pbt"]["best"] < r["random"]["at_equal"] for r in rows)
    # A tie: the best trial is one of the first generation, which both methods draw alike.
    ties = sum(r["pbt"]["best"] == r["random"]["at_equal"] for r in rows)
    mean = lambda values: sum(values) / len(values)
    print("\n| method | mean best val_loss | mean GPU-seconds | seeds better (tied) |")
    print("|---|---|---|---|")
    print("| pbt | %.4f | %.0f | %d of %d (%d) |" % (mean([r["pbt"]["best"] for r in rows]),
                                                  mean([r["pbt"]["gpu_seconds"] for r in rows]),
                                                  wins, len(rows), ties))
    print("| random, same GPU-seconds | %.4f | %.0f | %d of %d (%d) |" % (
        mean([r["random"]["at_equal"] for r in rows]),
        mean([r["pbt"]["gpu_seconds"] for r in rows]), len(rows) - wins - ties, len(rows), ties))
    print("| random, all it ran | %.4f | %.0f | |" % (mean([r["random"]["best"] for r in rows]),
                                                   mean([r["random"]["gpu_seconds"] for r in rows])))


if __name__ == "__main__":
    main()
