"""A resumable training loop, as docs/checkpoints.md tells users to write one.

Each step saves a checkpoint, then reports loss = 1 / (step + 1) + scale * (x - 0.3)^2. The first
attempt waits after step `hold_at` (-1: never) until the test has done its damage (a file
`release` in the checkpoint folder); every attempt appends "attempt start" to starts.log there,
and every step it runs to steps.log, so the test sees where each began and what it cost.
"""
import os
import sys
import time

import sweepd

p = sweepd.params()
steps = int(p.get("steps", 10))
hold_at = int(p.get("hold_at", 4))
use_checkpoints = bool(p.get("use_checkpoints", True))
x = float(p.get("x", 0.3))
scale = float(p.get("scale", 1.0))
folder = sweepd.checkpoint_dir()
attempt = int(os.environ.get("SWEEP_ATTEMPT", "1"))

state = sweepd.load_checkpoint() if use_checkpoints else None
start = 0 if state is None else state["step"] + 1
total = 0 if state is None else state["total"]
with open(os.path.join(folder, "starts.log"), "a") as f:
    f.write("%d %d\n" % (attempt, start))

for step in range(start, steps):
    with open(os.path.join(folder, "steps.log"), "a") as f:
        f.write("%d %d\n" % (attempt, step))
    total += step  # state that only survives through the checkpoint
    if use_checkpoints:
        sweepd.save_checkpoint({"step": step, "total": total}, step=step)
    if not sweepd.report(step=step, loss=1.0 / (step + 1) + scale * (x - 0.3) ** 2, total=total):
        sys.exit(0)  # pruned, or preempted with its checkpoint saved
    if attempt == 1 and step == hold_at:
        with open(os.path.join(folder, "held"), "w") as f:
            f.write("%d\n" % os.getpid())
        while not os.path.exists(os.path.join(folder, "release")):
            if sweepd.should_checkpoint():
                with open(os.path.join(folder, "preempted"), "w") as f:
                    f.write("%d\n" % step)
                sys.exit(0)  # preempted while waiting: the checkpoint at hold_at stands
            time.sleep(0.05)
sweepd.finish()
