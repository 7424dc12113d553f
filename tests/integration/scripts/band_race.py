"""Two trials that reach a hyperband band in a set order (early_terminate: min_iter 2, eta 3).
--role=b reports loss 10 twice, says so (DIR/b_reported), then reports nothing more and waits
for DIR/release (exit 0) for at most --seconds (exit 4). --role=a waits for b_reported, reports
loss 1 twice and exits 0. So b is alone at the band when it reports (threshold 10: it goes on),
and only a judgement without a report, after a's values, can stop it (threshold 1)."""
import argparse
import os
import sys
import time

import sweepd

parser = argparse.ArgumentParser()
parser.add_argument("--role", required=True)
parser.add_argument("--dir", required=True)
parser.add_argument("--seconds", type=float, default=120)
args, _ = parser.parse_known_args()
deadline = time.time() + args.seconds


def wait_for(name):
    while not os.path.exists(os.path.join(args.dir, name)):
        if time.time() > deadline:
            print("gave up waiting for", name, file=sys.stderr)
            sys.exit(4)
        time.sleep(0.05)


if args.role == "b":
    for step in range(2):
        if not sweepd.report(step=step, loss=10.0):
            sys.exit(0)
    open(os.path.join(args.dir, "b_reported"), "w").close()
    wait_for("release")
else:
    wait_for("b_reported")
    for step in range(2):
        sweepd.report(step=step, loss=1.0)
