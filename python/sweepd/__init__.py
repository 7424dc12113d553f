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
           "checkpoint_dir", "resume_step", "save_checkpoint", "load_checkpoint",
           "checkpoint_saved", "should_checkpoint", "SweepdError"]
__version__ = "0.1.0"


class SweepdError(RuntimeError):
    """The agent refused a request (the message says why), or could not be reached."""


_state = {"sock": None, "file": None, "step": 0, "stop": False, "reason": "", "preempted": False,
          "sigterm_handler": False, "recorded": -1}
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
        if reply.get("preempted"):
            _state["preempted"] = True
    if _state["preempted"]:
        reply["action"] = "stop"
    recorded = reply.get("checkpoint_recorded")
    if isinstance(recorded, int):
        # sweepd has stored a checkpoint at this step: older files are no longer needed, but for
        # the one a pbt copy of this trial is still to take (checkpoint_keep).
        keep = reply.get("checkpoint_keep")
        keep = keep if isinstance(keep, int) else None
        if recorded > _state["recorded"] or keep != _state.get("keep"):
            _state["recorded"] = max(recorded, _state["recorded"])
            _state["keep"] = keep
            _remove_checkpoints_before(_state["recorded"], keep)
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
    _watch_sigterm()
    keep_going = not _state["preempted"]
    error = None
    if _is_reporting_rank(dist):
        if _in_sweep():
            try:
                reply = _request({"op": "report", "step": step,
                                  "metrics": {n: _encode(v) for n, v in zip(names, values)}})
                keep_going = reply.get("action") != "stop" and not _state["preempted"]
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
            # Rank 0's "preempted" travels with the reason: every rank then checkpoints.
            box = [str(error) if error is not None else _state["reason"], _state["preempted"]]
            dist.broadcast_object_list(box, src=0)
            if code < -0.5:
                raise error if error is not None else SweepdError(box[0])
            _state["stop"] = True
            _state["reason"] = box[0]
            if box[1]:
                _state["preempted"] = True
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


# ---- Checkpoints: a trial that is lost (its node died, its agent was stopped or preempted)
# runs again, on whichever agent takes it, from the last checkpoint sweepd recorded.
#
#     state = sweepd.load_checkpoint()          # None on the first attempt
#     start = 0 if state is None else state["epoch"] + 1
#     for epoch in range(start, params["epochs"]):
#         ...
#         sweepd.save_checkpoint({"epoch": epoch, "model": model.state_dict()}, step=epoch)
#         if not sweepd.report(step=epoch, val_loss=loss):
#             break                              # pruned, or preempted (checkpoint saved above)

_CHECKPOINT_PREFIX = "ckpt-"


def checkpoint_dir():
    """The trial's checkpoint folder ($SWEEP_CHECKPOINT_DIR), kept across its attempts.

    On the spec's `checkpoint: {dir: ...}` (a shared filesystem) a retry on any agent sees it;
    without one it is under the agent's workdir, so only a retry on the same agent does. Outside
    a sweep: ./checkpoint.
    """
    path = os.environ.get("SWEEP_CHECKPOINT_DIR") or os.path.join(os.getcwd(), "checkpoint")
    os.makedirs(path, exist_ok=True)
    return path


def resume_step():
    """The step of the checkpoint this attempt resumes from, or None (start from the beginning).

    sweepd dropped the earlier attempt's reports after this step: report the steps after it
    again, and the trial's curve has every step once.
    """
    text = os.environ.get("SWEEP_RESUME_STEP")
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _checkpoint_path(step, name):
    return os.path.join(checkpoint_dir(), "%s%d-%s" % (_CHECKPOINT_PREFIX, int(step), name))


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_atomically(path, write):
    tmp = path + ".tmp.%d" % os.getpid()
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(path))


def checkpoint_saved(step):
    """Tells sweepd the trial's checkpoint at `step` is on disk: a retry resumes from it.

    For scripts that write their own checkpoint files into checkpoint_dir(); save_checkpoint()
    calls it. Only global rank 0 tells (the others return at once). True means keep going.
    """
    step = int(step)
    if step < 0:
        raise ValueError("step must be >= 0; got %d" % step)
    _watch_sigterm()
    if not (_is_reporting_rank(_dist()) and _in_sweep()):
        return not _state["preempted"]
    reply = _request({"op": "checkpoint", "step": step})
    return reply.get("action") != "stop"


def save_checkpoint(state, step, name="checkpoint.pt"):
    """Saves `state` as the trial's checkpoint at `step`, then tells sweepd (checkpoint_saved).

    torch.save when torch is imported, else pickle; written to a temporary file, fsynced and
    renamed, so a kill at any moment leaves the previous checkpoint whole. Older checkpoints are
    removed once sweepd has stored a newer one (the agent's answers say which). In a
    distributed job only global rank 0 writes and tells: call it on every rank (the others wait
    for it, so none reads a half-written file). Returns the path.
    """
    dist = _dist()
    path = _checkpoint_path(step, name)
    try:
        if _is_reporting_rank(dist):
            if "torch" in sys.modules:
                import torch

                _write_atomically(path, lambda f: torch.save(state, f))
            else:
                import pickle

                _write_atomically(path, lambda f: pickle.dump(state, f, protocol=4))
            checkpoint_saved(step)
    finally:
        if dist is not None:
            dist.barrier()  # also when rank 0 failed: no rank waits here for ever
    return path


def _remove_checkpoints_before(step, keep=None):
    """Removes checkpoint files (ckpt-N-*) with N < step, N != keep: sweepd has stored a newer
    one, so a retry never asks for them (and no pbt copy still to start, which `keep` names).
    Until then they stay, whatever was written since."""
    folder = os.environ.get("SWEEP_CHECKPOINT_DIR")
    if not folder or not os.path.isdir(folder):
        return
    for entry in os.listdir(folder):
        if not entry.startswith(_CHECKPOINT_PREFIX):
            continue
        number = entry[len(_CHECKPOINT_PREFIX):].split("-", 1)[0]
        try:
            other = int(number)
        except ValueError:
            continue
        if other < step and other != keep:
            try:
                os.remove(os.path.join(folder, entry))
            except OSError:
                pass


def load_checkpoint(name="checkpoint.pt", map_location=None):
    """The state saved at resume_step(), or None when this attempt starts from the beginning.

    Only the checkpoint sweepd recorded is loaded: one written after it (the attempt died before
    sweepd heard of it) is ignored, since sweepd dropped the reports after the recorded step.
    """
    step = resume_step()
    if step is None:
        return None
    path = _checkpoint_path(step, name)
    if not os.path.exists(path):
        raise SweepdError(
            "sweepd recorded a checkpoint at step %d but %s is missing; is the spec's "
            "checkpoint.dir shared by every agent?" % (step, path))
    if "torch" in sys.modules:
        import torch

        return torch.load(path, map_location=map_location)
    import pickle

    with open(path, "rb") as f:
        return pickle.load(f)


def should_checkpoint():
    """Whether the trial is being preempted (its agent is stopping, or it got SIGTERM): save a
    checkpoint and exit; it runs again from there."""
    _watch_sigterm()
    return _state["preempted"]


def _on_sigterm(signum, frame):
    if _state["stop"] and not _state["preempted"]:
        # Told to stop for good (pruned, canceled) and still running past the grace period:
        # SIGTERM ends it, as it would without the client.
        import signal

        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    _state["preempted"] = True
    _state["stop"] = True
    if not _state["reason"]:
        _state["reason"] = "preempted: SIGTERM"


def _watch_sigterm():
    """Inside a sweep, SIGTERM (Slurm, Kubernetes, the agent shutting down) becomes 'preempted':
    the next report() answers False and should_checkpoint() True, so the loop saves and leaves
    within the grace period. Only where SIGTERM still has its default action, from the main
    thread."""
    if _state["sigterm_handler"] or not _in_sweep():
        return
    _state["sigterm_handler"] = True
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):
        pass
