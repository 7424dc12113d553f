"""Uses the sweepd Python client, as a real training script would."""
import sys
import time

import sweepd

p = sweepd.params()
steps = int(p.get("steps", 20))
for step in range(steps):
    loss = (p["opt"]["lr"] - 0.1) ** 2 + 1.0 / (step + 1)
    if not sweepd.report(step=step, loss=loss, acc=1 - loss):
        print("told to stop:", sweepd.stop_reason(), flush=True)
        sys.exit(0)
    time.sleep(float(p.get("sleep", 0)))
sweepd.finish(final_loss=loss)
