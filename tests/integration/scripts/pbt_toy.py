"""A member of a pbt population, written as docs/checkpoints.md tells users to write one.

Its "weights" are one number w that each step moves toward 10 by lr * (10 - w): a larger lr
learns faster, so the population's ranking is clear. Each step saves a checkpoint {w} and
reports loss = |10 - w|, w, and w_prev (the w it started the step from: on a copy's first step,
the parent's w at the step it was copied from). The members move in lockstep (a folder of
progress files), so every decision sees the whole population; copies join as they start.
"""
import os
import sys
import time

import sweepd

p = sweepd.params()
steps = int(p["steps"])
step_sleep = float(p.get("step_sleep", 0.05))
lr = float(p["lr"])
sync_dir = p["sync_dir"]
me = os.environ.get("SWEEP_TRIAL_ID", "manual")
os.makedirs(sync_dir, exist_ok=True)


def progress(value):
    tmp = os.path.join(sync_dir, me + ".tmp")
    with open(tmp, "w") as f:
        f.write(str(value))
    os.replace(tmp, os.path.join(sync_dir, me))


def wait_for_peers(step):
    deadline = time.time() + 20
    while time.time() < deadline:
        behind = False
        for name in os.listdir(sync_dir):
            if name.endswith(".tmp") or name == me:
                continue
            try:
                with open(os.path.join(sync_dir, name)) as f:
                    text = f.read()
            except OSError:
                continue
            if text != "done" and text and int(text) < step:
                behind = True
        if not behind:
            return
        time.sleep(0.02)


state = sweepd.load_checkpoint()
w = 0.0 if state is None else state["w"]
start = 0 if state is None else sweepd.resume_step() + 1
for step in range(start, steps):
    progress(step)
    wait_for_peers(step)
    w_prev = w
    w = w + lr * (10.0 - w)
    sweepd.save_checkpoint({"w": w}, step=step)
    if not sweepd.report(step=step, loss=abs(10.0 - w), w=w, w_prev=w_prev):
        progress("done")
        sys.exit(0)
    time.sleep(step_sleep)
progress("done")
sweepd.finish()
