"""Misbehaves on its socket and floods stdout; the trial must still complete normally."""
import json
import os
import socket

sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(os.environ["SWEEP_SOCKET"])
f = sock.makefile("rw")


def ask(line):
    f.write(line + "\n")
    f.flush()
    return json.loads(f.readline())


replies = [
    ask("this is not json"),
    ask(json.dumps({"op": "explode"})),
    ask(json.dumps({"op": "report", "trial": "s-other-0001", "metrics": {"loss": 1}})),
    ask(json.dumps({"op": "report", "metrics": {"loss": "high"}})),
]
for r in replies:
    print("reply-error:", r.get("error"), flush=True)
for step in range(5):
    r = ask(json.dumps({"op": "report", "step": step, "metrics": {"loss": 1.0 / (step + 1)}}))
    assert r == {"action": "continue"}, r
# A flood of output (200k lines), with a metric-looking line that must be ignored now that the
# client reported through the socket.
for i in range(200000):
    print("noise", i, "loss=999")
