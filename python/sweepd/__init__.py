"""sweepd's reporting client for training scripts (standard library only; torch optional).

    import sweepd
    params = sweepd.params()                 # {"optimizer": {"lr": 0.01}, "epochs": 10}
    for epoch in range(params["epochs"]):
        ...
        if not sweepd.report(step=epoch, val_loss=loss, acc=acc):
            break                            # pruned or canceled: save and leave
    sweepd.finish()

Inside a sweep the agent sets SWEEP_SOCKET, SWEEP_TRIAL_ID and SWEEP_PARAMS_JSON. Outside one
(running the script by hand) params() parses --name=value arguments and report() only logs, so
the same script runs either way.

With torch.distributed initialised, report() averages the metrics over the process group
(NCCL on GPUs, gloo on CPU), only global rank 0 talks to the agent, and rank 0's answer is
broadcast, so every rank returns the same value at the same step and no collective hangs.
Every rank must report the same metric names at the same steps.
"""

import json
import math
import os
import socket
import sys
import time

__all__ = ["params", "flat_params", "report", "should_stop", "stop_reason", "finish",
           "SweepdError"]
__version__ = "0.1.0"


class SweepdError(RuntimeError):
    """The agent refused a request (the message says why), or could not be reached."""


_state = {"sock": None, "file": None, "step": 0, "stop": False, "reason": ""}
_TIMEOUT_SECONDS = 60.0


def _nest(flat):
    nested = {}
    for name, value in flat.items():
        node = nested
        parts = name.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value
    return nested


def _parse_value(text):
    try:
        return json.loads(text)
    except ValueError:
        return text


def _argv_params(argv):
    flat = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("--") or arg == "--":
            continue
        body = arg[2:]
        if "=" in body:
            name, value = body.split("=", 1)
            flat[name] = _parse_value(value)
        elif i < len(argv) and not argv[i].startswith("--"):
            flat[body] = _parse_value(argv[i])
            i += 1
        else:
            flat[body] = True
    return flat


def flat_params():
    """The trial's parameters with dotted names, as the spec flattens them."""
    text = os.environ.get("SWEEP_PARAMS_JSON")
    if text:
        return json.loads(text)
    return _argv_params(sys.argv[1:])


def params():
    """The trial's parameters, nested where the spec nests them. The same on every rank.

    This is the run's config as W&B's agent builds it: a nested parameter is a dict under its
    top-level key; a top-level name with dots (`optimizer.lr`, Hydra style) stays one key.
    """
    trial_dir = os.environ.get("SWEEP_TRIAL_DIR")
    if trial_dir:
        try:
            with open(os.path.join(trial_dir, "params.json")) as f:
                return json.load(f)
        except (OSError, ValueError):
            pass
    return _nest(flat_params())


def _in_sweep():
    return bool(os.environ.get("SWEEP_SOCKET"))


def _dist():
    """torch.distributed when it is initialised with more than one rank, else None."""
    if "torch" not in sys.modules:
        return None
    try:
        import torch.distributed as dist
    except ImportError:
        return None
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    return dist


def _encode(value):
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _connect():
    path = os.environ["SWEEP_SOCKET"]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(_TIMEOUT_SECONDS)
    try:
        sock.connect(path)
    except OSError as e:
        raise SweepdError("cannot reach the sweep agent at %s: %s" % (path, e)) from e
    _state["sock"] = sock
    _state["file"] = sock.makefile("rw", encoding="utf-8")


def _reconnect_seconds():
    try:
        return float(os.environ.get("SWEEPD_RECONNECT_SECONDS", "300"))
    except ValueError:
        return 300.0


def _request(message):
    """Sends one request and returns the reply.

    If the agent goes away (it crashed or is restarting) the request is sent again once a new
    agent listens on the same socket: a restarted agent takes its trials over. It gives up after
    $SWEEPD_RECONNECT_SECONDS (default 300).
    """
    message["trial"] = os.environ.get("SWEEP_TRIAL_ID", "")
    line = json.dumps(message, allow_nan=False) + "\n"
    deadline = None
    delay = 0.1
    attempts = 0
    while True:
        attempts += 1
        try:
            if _state["file"] is None:
                _connect()
            _state["file"].write(line)
            _state["file"].flush()
            reply_line = _state["file"].readline()
            if not reply_line:
                raise OSError("the agent closed the connection")
            break
        except (OSError, socket.timeout, SweepdError) as e:
            _close()
            now = time.monotonic()
            if deadline is None:
                deadline = now + _reconnect_seconds()
            # A connection can be stale (the agent restarted since): one retry always.
            if now >= deadline and attempts > 1:
                raise SweepdError("talking to the sweep agent failed: %s" % e) from e
            if attempts == 1:
                continue
            time.sleep(min(delay, max(0.0, deadline - now)))
            delay = min(delay * 2, 2.0)
    reply = json.loads(reply_line)
    if "error" in reply:
        raise SweepdError(reply["error"])
    if reply.get("action") == "stop":
        _state["stop"] = True
        _state["reason"] = reply.get("reason", "")
    return reply


def _close():
    for key in ("file", "sock"):
        if _state[key] is not None:
            try:
                _state[key].close()
            except OSError:
                pass
            _state[key] = None


def _reduce(dist, values, reduce):
    import torch

    backend = dist.get_backend()
    if backend == "nccl":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", torch.cuda.current_device())))
    else:
        device = torch.device("cpu")
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    op = {"mean": dist.ReduceOp.SUM, "sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX,
          "min": dist.ReduceOp.MIN}[reduce]
    dist.all_reduce(tensor, op=op)
    if reduce == "mean":
        tensor /= dist.get_world_size()
    return tensor.cpu().tolist(), device


def report(step=None, reduce="mean", **metrics):
    """Reports metrics at `step` (default: 0, 1, 2, ...). True means keep going.

    In a distributed job every rank calls it with the same names; values are reduced over the
    group with `reduce` (mean, sum, max, min) and the answer is the same on every rank.
    """
    if reduce not in ("mean", "sum", "max", "min"):
        raise ValueError("reduce must be mean, sum, max or min; got %r" % (reduce,))
    if not metrics:
        raise ValueError("report() needs at least one metric, e.g. report(step, loss=0.4)")
    if step is None:
        step = _state["step"]
    step = int(step)
    _state["step"] = step + 1
    names = sorted(metrics)
    values = [float(metrics[n]) for n in names]
    dist = _dist()
    device = None
    if dist is not None:
        values, device = _reduce(dist, values, reduce)
    keep_going = True
    error = None
    if _is_reporting_rank(dist):
        if _in_sweep():
            try:
                reply = _request({"op": "report", "step": step,
                                  "metrics": {n: _encode(v) for n, v in zip(names, values)}})
                keep_going = reply.get("action") != "stop"
            except SweepdError as e:
                if dist is None:
                    raise
                error = e  # told to every rank below, so none waits in the broadcast
        else:
            print("sweepd: step=%d %s" % (step, " ".join("%s=%g" % nv for nv in zip(names, values))),
                  file=sys.stderr)
    if dist is not None:
        import torch

        # 1: keep going, 0: stop, -1: rank 0 could not reach the agent.
        code = -1.0 if error is not None else (1.0 if keep_going else 0.0)
        flag = torch.tensor([code], device=device)
        dist.broadcast(flag, src=0)
        code = flag.item()
        if code < 0.5:
            # Every rank takes part: the reason (or the error) travels from rank 0.
            box = [str(error) if error is not None else _state["reason"]]
            dist.broadcast_object_list(box, src=0)
            if code < -0.5:
                raise error if error is not None else SweepdError(box[0])
            _state["stop"] = True
            _state["reason"] = box[0]
        keep_going = code > 0.5
    return keep_going


def _is_reporting_rank(dist):
    """Global rank 0 reports; without a process group, a torchrun-started rank > 0 stays quiet."""
    if dist is not None:
        return dist.get_rank() == 0
    return os.environ.get("RANK", "0") in ("", "0")


def should_stop():
    """Whether the last report was answered with stop (no collective, no request)."""
    return _state["stop"]


def stop_reason():
    """Why the trial was told to stop ("pruned by asha at rung 2"), or ""."""
    return _state["reason"]


def finish(**final_metrics):
    """Sends final metrics (optional) and closes the connection."""
    dist = _dist()
    if final_metrics and dist is not None:
        names = sorted(final_metrics)
        values, _ = _reduce(dist, [float(final_metrics[n]) for n in names], "mean")
        final_metrics = dict(zip(names, values))
    if _is_reporting_rank(dist) and _in_sweep():
        message = {"op": "finish"}
        if final_metrics:
            message["metrics"] = {n: _encode(v) for n, v in final_metrics.items()}
        _request(message)
    _close()
