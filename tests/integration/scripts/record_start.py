"""Appends "<trial id> <pid>" to --log when it starts (O_APPEND: whole lines, however many run
at once), runs --seconds, reports `loss`, and exits 0. Tests count the lines: a trial started
twice shows twice."""
import argparse
import os
import time

import sweepd

parser = argparse.ArgumentParser()
parser.add_argument("--log", required=True)
parser.add_argument("--x", type=float, default=0.0)
parser.add_argument("--seconds", type=float, default=0.2)
args, _ = parser.parse_known_args()

fd = os.open(args.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
os.write(fd, f"{os.environ['SWEEP_TRIAL_ID']} {os.getpid()}\n".encode())
os.close(fd)
time.sleep(args.seconds)
sweepd.report(step=0, loss=(args.x - 0.5) ** 2)
