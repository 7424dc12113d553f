"""A training script that speaks the reporting protocol directly (no client library).

Reports `loss` for --steps steps (default 20) and stops when the agent says so.
"""
import argparse
import json
import os
import socket
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, default=0.0)
parser.add_argument("--steps", type=int, default=20)
parser.add_argument("--sleep", type=float, default=0.0)
parser.add_argument("--tag", default="")
args, _ = parser.parse_known_args()

sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(os.environ["SWEEP_SOCKET"])
stream = sock.makefile("rw")
trial = os.environ["SWEEP_TRIAL_ID"]
for step in range(args.steps):
    loss = (args.x - 0.3) ** 2 + 1.0 / (step + 1)
    stream.write(json.dumps({"op": "report", "step": step, "trial": trial,
                             "metrics": {"loss": loss, "x": args.x}}) + "\n")
    stream.flush()
    reply = json.loads(stream.readline())
    if reply.get("action") == "stop":
        print("stopped:", reply.get("reason"), flush=True)
        sys.exit(0)
    if args.sleep:
        time.sleep(args.sleep)
