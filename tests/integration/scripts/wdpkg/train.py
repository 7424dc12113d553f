"""Run as `python -m wdpkg.train`, the way W&B users start packaged training code: it only
imports from, and finds its relative data file in, the code dir the command runs in."""
import os

import sweepd

with open(os.path.join("wdpkg", "data.txt")) as f:  # relative to the working directory
    offset = float(f.read())
print("cwd", os.getcwd(), flush=True)
print("trial_dir", os.environ["SWEEP_TRIAL_DIR"], flush=True)
sweepd.report(step=0, loss=offset + sweepd.params()["x"])
