"""A trial that misbehaves in one of the ways issue 14 probed; the agent must stay well.

--mode=ok: report loss=0.25 on stdout and exit 0.
--mode=redos: print lines of 4,000 `a` (a backtracking regex engine takes exponential time on
  them with the ReDoS metric_pattern), then loss=0.5.
--mode=flood: write --mib MiB of 1 MiB lines as fast as it can, then loss=0.5.
--mode=escape: start two children that leave the trial's process group (one with setsid, one
  with setpgid), each carrying --tag in its command line, write their pids to escapees.json, then
  exit 0 (or, with --wait=1, ignore SIGTERM and sleep until killed).
--mode=after_finish: finish with loss=0.5, then report loss=0.125 (which must be refused).
--mode=garbage: send the reporting socket garbage (binary, an endless line, bad JSON), then
  report loss=0.75 through the client.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time

CHILD = "import time\ntime.sleep(600)\n"


def spawn(tag, how):
    args = [sys.executable, "-c", CHILD, tag]
    kwargs = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    if how == "setsid":
        kwargs["start_new_session"] = True
    elif how == "setpgid":
        kwargs["preexec_fn"] = os.setpgrp
    return subprocess.Popen(args, **kwargs).pid


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", default="ok")
    p.add_argument("--tag", default="misbehave")
    p.add_argument("--mib", type=int, default=64)
    p.add_argument("--wait", type=int, default=0)
    p.add_argument("--x", type=float, default=0)
    a = p.parse_args()
    trial_dir = os.environ["SWEEP_TRIAL_DIR"]
    if a.mode == "redos":
        for _ in range(20):
            print("a" * 4000, flush=True)
        print("loss=0.5", flush=True)
    elif a.mode == "flood":
        line = b"x" * ((1 << 20) - 1) + b"\n"
        out = sys.stdout.buffer
        for _ in range(a.mib):
            out.write(line)
        out.write(b"loss=0.5\n")
        out.flush()
    elif a.mode == "escape":
        pids = [spawn(a.tag, "setsid"), spawn(a.tag, "setpgid")]
        with open(os.path.join(trial_dir, "escapees.json.tmp"), "w") as f:
            json.dump(pids, f)
        os.rename(os.path.join(trial_dir, "escapees.json.tmp"),
                  os.path.join(trial_dir, "escapees.json"))
        print("loss=0.25", flush=True)
        if a.wait:
            # Deaf to the stop: the agent's SIGKILL ends the trial's group (its shim included),
            # and the escapees, outside it, are the agent's to find.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            time.sleep(600)
    elif a.mode == "garbage":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(os.environ["SWEEP_SOCKET"])
        s.sendall(b"\x00\xff\xfe garbage \x01\n")
        s.sendall(b"{\"op\": \"report\", \"metrics\": {\"loss\": 1e999}}\n")
        s.sendall(b"{" * 200000)  # an endless line, over the request limit
        s.sendall(b"\n")
        s.close()
        import sweepd
        sweepd.report(loss=0.75)
    elif a.mode == "after_finish":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(os.environ["SWEEP_SOCKET"])
        f = s.makefile("rw")
        for request in ({"op": "finish", "metrics": {"loss": 0.5}},
                        {"op": "report", "step": 7, "metrics": {"loss": 0.125}}):
            f.write(json.dumps(request) + "\n")
            f.flush()
            print("reply:", f.readline().strip(), flush=True)
    else:
        print("loss=0.25", flush=True)


if __name__ == "__main__":
    main()
