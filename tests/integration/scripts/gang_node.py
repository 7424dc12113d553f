"""One node of a (possibly multi-node) trial for the gang tests.

Writes node.json in its trial folder: the environment the agent gave it, and when it ran. Node 0
reports `loss` through the client; other nodes do not (sweepd relays node 0 only).
--mode=ok: run --seconds (default 0.3) and exit 0. --mode=fail_rank1: node 1 exits 3 at once,
node 0 runs --seconds. --mode=hold: like ok; meant to be stopped. --mode=sleep: sleeps --seconds
without talking to the agent (survives the agent's death). --mode=release: like sleep, but ends
(exit 0) when the test creates `release` in the trial folder, so a test decides when it ends
instead of racing a timer; exit 4 if that does not come within --seconds.
--mode=sleep_first_attempt: attempt 1 (SWEEP_ATTEMPT) is --mode=sleep, later attempts --mode=ok
for 0.3 s.
"""

import json
import os
import sys
import time

import sweepd


def main():
    p = sweepd.flat_params()
    mode = p.get("mode", "ok")
    seconds = float(p.get("seconds", 0.3))
    if mode == "sleep_first_attempt":
        if os.environ.get("SWEEP_ATTEMPT", "1") == "1":
            mode = "sleep"
        else:
            mode, seconds = "ok", 0.3
    rank = int(os.environ.get("SWEEP_NODE_RANK", "0"))
    keys = ["SWEEP_NODE_RANK", "SWEEP_NNODES", "SWEEP_GPUS", "SWEEP_GPUS_PER_NODE",
            "SWEEP_NPROC_PER_NODE", "MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE",
            "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "SWEEP_TRIAL_ID"]
    record = {k: os.environ.get(k) for k in keys}
    record["start"] = time.time()
    with open(os.path.join(os.environ["SWEEP_TRIAL_DIR"], "node.json"), "w") as f:
        json.dump(record, f)
    if mode == "fail_rank1" and rank == 1:
        print("node 1 failing on purpose", file=sys.stderr)
        sys.exit(3)
    if mode == "sleep":
        time.sleep(seconds)
        return
    if mode == "release":
        deadline = time.time() + seconds
        while not os.path.exists(os.path.join(os.environ["SWEEP_TRIAL_DIR"], "release")):
            if time.time() > deadline:
                print("never released", file=sys.stderr)
                sys.exit(4)
            time.sleep(0.05)
        return
    deadline = time.time() + seconds
    step = 0
    while time.time() < deadline:
        if not sweepd.report(step=step, loss=1.0 / (step + 1)):
            break
        step += 1
        time.sleep(0.05)
    record["end"] = time.time()
    with open(os.path.join(os.environ["SWEEP_TRIAL_DIR"], "node.json"), "w") as f:
        json.dump(record, f)
    sweepd.finish()


if __name__ == "__main__":
    main()
