#!/usr/bin/env python3
"""PBT against random search on a real training, at equal compute (issue 17's proof).

For each seed, runs examples/pbt/sweep.yaml (population 8, 16 epochs each, a decision every 2
epochs) and the same search space with method random and run_cap 8: both train 8 x 16 epochs in
all (a pbt copy goes on from its parent's epoch, it adds none). Each runs with `sweepctl run`
(embedded scheduler and agent, 8 trials at once) and the trial interpreter from SWEEPD_PYTHON
(default /usr/bin/python3, which has torch and sklearn). Prints, per seed and on average, the
best validation loss each reached and the GPU-seconds (slot-seconds here) each used.

    python3 bench/pbt_digits.py [--sweepctl build/cli/sweepctl] [--seeds 0,1,2,3,4]
"""
import argparse
import json
import os
import shutil
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
    return {"best": float(sweep["best_value"]), "gpu_seconds": float(sweep["gpu_seconds_used"]),
            "trials": sum(int(v) for v in counts.values())}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sweepctl", default=os.path.join(ROOT, "build", "cli", "sweepctl"))
    parser.add_argument("--seeds", default="0,1,2,3,4")
    args = parser.parse_args()
    with open(os.path.join(ROOT, "examples", "pbt", "sweep.yaml")) as f:
        pbt_spec = f.read()
    random_spec = (pbt_spec.replace("method: pbt", "method: random\nrun_cap: 8")
                   .replace("pbt:\n  population_size: 8\n  interval: 2\n", ""))
    assert "pbt:" not in random_spec
    rows = []
    with tempfile.TemporaryDirectory(prefix="pbt-bench-") as tmp:
        for seed in [int(s) for s in args.seeds.split(",")]:
            row = {"seed": seed}
            for method, text in (("pbt", pbt_spec), ("random", random_spec)):
                text = text.replace("seed: 0", "seed: %d" % seed)
                row[method] = run(args.sweepctl, text, os.path.join(tmp, "%s-%d" % (method, seed)))
            rows.append(row)
            print("seed %d  pbt best val_loss %.4f (%d trials, %.0f GPU-s)  random %.4f (%d trials,"
                  " %.0f GPU-s)" % (seed, row["pbt"]["best"], row["pbt"]["trials"],
                                    row["pbt"]["gpu_seconds"], row["random"]["best"],
                                    row["random"]["trials"], row["random"]["gpu_seconds"]),
                  flush=True)
    wins = sum(r["pbt"]["best"] < r["random"]["best"] for r in rows)
    mean = lambda m, k: sum(r[m][k] for r in rows) / len(rows)
    print("\n| method | mean best val_loss | mean GPU-seconds | seeds won |")
    print("|---|---|---|---|")
    print("| pbt | %.4f | %.0f | %d of %d |" % (mean("pbt", "best"), mean("pbt", "gpu_seconds"),
                                             wins, len(rows)))
    print("| random | %.4f | %.0f | %d of %d |" % (mean("random", "best"),
                                                mean("random", "gpu_seconds"),
                                                len(rows) - wins, len(rows)))


if __name__ == "__main__":
    main()
