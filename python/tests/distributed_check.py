"""The client under torch.distributed (gloo), two real ranks, against a stand-in agent.

Run with an interpreter that has torch (Debian: /usr/bin/python3 distributed_check.py); ctest
does. Checks: the agent sees one report per step, holding the mean of the ranks' values; the
stop answer reaches both ranks at the same step with its reason; and when rank 0 cannot reach
the agent, every rank raises instead of one hanging in a collective.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))

RANK_SCRIPT = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
import torch.distributed as dist
import sweepd
dist.init_process_group("gloo")
rank = dist.get_rank()
out = {"rank": rank, "answers": []}
try:
    for step in range(5):
        keep = sweepd.report(step=step, loss=float(rank + 1) * (step + 1), acc=rank)
        out["answers"].append(keep)
        if not keep:
            break
    out["reason"] = sweepd.stop_reason()
except sweepd.SweepdError as e:
    out["error"] = str(e)
print(json.dumps(out), flush=True)
dist.destroy_process_group()
"""


def serve(path, stop_at, requests):
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)

    def loop():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn, conn.makefile("rw") as f:
                for line in f:
                    request = json.loads(line)
                    requests.append(request)
                    stop = request.get("step", -1) >= stop_at
                    reply = {"action": "stop", "reason": "pruned by the test"} if stop else {
                        "action": "continue"}
                    f.write(json.dumps(reply) + "\n")
                    f.flush()

    threading.Thread(target=loop, daemon=True).start()
    return server


def run_ranks(socket_path, port):
    procs = []
    for rank in range(2):
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                   WORLD_SIZE="2", LOCAL_RANK=str(rank), SWEEP_SOCKET=socket_path,
                   SWEEP_TRIAL_ID="t-1", SWEEPD_RECONNECT_SECONDS="0.5")
        procs.append(subprocess.Popen([sys.executable, "-c", RANK_SCRIPT,
                                       os.path.join(HERE, "..")], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = {}
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        doc = json.loads(out.strip().splitlines()[-1])
        results[doc["rank"]] = doc
    return results


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "agent.sock")
        requests = []
        server = serve(path, stop_at=2, requests=requests)
        results = run_ranks(path, free_port())
        server.close()
        # One report per step (rank 0's), with the mean over ranks: loss (1+2)/2*(step+1).
        assert [r["step"] for r in requests] == [0, 1, 2], requests
        for r in requests:
            assert abs(r["metrics"]["loss"] - 1.5 * (r["step"] + 1)) < 1e-12, r
            assert abs(r["metrics"]["acc"] - 0.5) < 1e-12, r
        for rank in (0, 1):
            assert results[rank]["answers"] == [True, True, False], results
            assert results[rank]["reason"] == "pruned by the test", results
        # Rank 0 cannot reach the agent: both ranks raise, neither hangs.
        results = run_ranks(os.path.join(tmp, "nobody-here.sock"), free_port())
        for rank in (0, 1):
            assert "cannot reach the sweep agent" in results[rank].get("error", ""), results
    print("distributed client checks passed")


if __name__ == "__main__":
    main()
