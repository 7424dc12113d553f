"""The reporting client against a real Unix socket served by a stand-in agent."""

import io
import json
import math
import os
import signal
import socket
import sys
import tempfile
import threading
import unittest
from contextlib import redirect_stderr

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import sweepd  # noqa: E402


class StandInAgent:
    """Serves the protocol on a Unix socket: records requests, answers stop from a step on."""

    def __init__(self, path, stop_at=None, error_on=None, preempt_at=None):
        self.path = path
        self.stop_at = stop_at
        self.preempt_at = preempt_at
        self.error_on = error_on
        self.keep = None  # the step a pbt copy still needs (sweepd's pin), when set
        self.requests = []
        self.conn = None
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(4)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.conn = conn
            with conn, conn.makefile("rw") as f:
                for line in f:
                    request = json.loads(line)
                    self.requests.append(request)
                    if self.error_on is not None and request.get("step") == self.error_on:
                        reply = {"error": "metrics.loss: must be a number"}
                    elif request.get("op") == "checkpoint":
                        # As the agent does once sweepd acknowledged it: here one step late.
                        reply = {"action": "continue"}
                        if request["step"] >= 1:
                            reply["checkpoint_recorded"] = request["step"] - 1
                            if self.keep is not None:
                                reply["checkpoint_keep"] = self.keep
                    elif self.preempt_at is not None and request.get("step", -1) >= self.preempt_at:
                        reply = {"action": "stop", "reason": "preempted: the agent is shutting down",
                                 "preempted": True}
                    elif self.stop_at is not None and request.get("step", -1) >= self.stop_at:
                        reply = {"action": "stop", "reason": "pruned by test at rung 1"}
                    else:
                        reply = {"action": "continue"}
                    f.write(json.dumps(reply) + "\n")
                    f.flush()

    def close(self):
        self.server.close()

    def crash(self):
        """Goes away like a killed agent: the connection breaks, the socket file stays."""
        self.server.close()
        if self.conn is not None:
            self.conn.shutdown(socket.SHUT_RDWR)


class ClientTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()
        self.saved_env = dict(os.environ)
        sweepd._close()
        sweepd._state.update(step=0, stop=False, reason="", preempted=False, sigterm_handler=False,
                             recorded=-1, keep=None)

    def tearDown(self):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        sweepd._close()
        os.environ.clear()
        os.environ.update(self.saved_env)

    def start_agent(self, **kwargs):
        agent = StandInAgent(os.path.join(self.dir, "t.sock"), **kwargs)
        self.addCleanup(agent.close)
        os.environ["SWEEP_SOCKET"] = agent.path
        os.environ["SWEEP_TRIAL_ID"] = "s-test-0001"
        os.environ["SWEEP_PARAMS_JSON"] = json.dumps(
            {"optimizer.lr": 0.1, "optimizer.name": "adam", "model.hidden": 16, "epochs": 3})
        return agent

    def test_params_nest_dotted_names(self):
        self.start_agent()
        self.assertEqual(sweepd.params(), {"optimizer": {"lr": 0.1, "name": "adam"},
                                           "model": {"hidden": 16}, "epochs": 3})
        self.assertEqual(sweepd.flat_params()["optimizer.lr"], 0.1)

    def test_params_from_argv_outside_a_sweep(self):
        os.environ.pop("SWEEP_SOCKET", None)
        os.environ.pop("SWEEP_PARAMS_JSON", None)
        saved = sys.argv
        sys.argv = ["train.py", "--optimizer.lr=0.5", "--model.hidden", "8", "--name=run a",
                    "--fast"]
        try:
            self.assertEqual(sweepd.params(), {"optimizer": {"lr": 0.5}, "model": {"hidden": 8},
                                               "name": "run a", "fast": True})
        finally:
            sys.argv = saved

    def test_report_sends_steps_metrics_and_trial(self):
        agent = self.start_agent()
        self.assertTrue(sweepd.report(loss=0.5, acc=0.9))
        self.assertTrue(sweepd.report(loss=float("nan"), acc=float("inf")))
        self.assertTrue(sweepd.report(step=10, loss=-float("inf")))
        self.assertEqual([r["step"] for r in agent.requests], [0, 1, 10])
        self.assertEqual(agent.requests[0]["metrics"], {"acc": 0.9, "loss": 0.5})
        self.assertEqual(agent.requests[1]["metrics"], {"acc": "Infinity", "loss": "NaN"})
        self.assertEqual(agent.requests[2]["metrics"], {"loss": "-Infinity"})
        self.assertTrue(all(r["trial"] == "s-test-0001" for r in agent.requests))
        self.assertTrue(all(r["op"] == "report" for r in agent.requests))

    def test_stop_makes_report_false(self):
        self.start_agent(stop_at=2)
        results = [sweepd.report(step=s, loss=1.0 / (s + 1)) for s in range(4)]
        self.assertEqual(results, [True, True, False, False])
        self.assertTrue(sweepd.should_stop())
        self.assertEqual(sweepd.stop_reason(), "pruned by test at rung 1")

    def test_error_replies_raise(self):
        self.start_agent(error_on=1)
        sweepd.report(step=0, loss=1.0)
        with self.assertRaises(sweepd.SweepdError) as raised:
            sweepd.report(step=1, loss=1.0)
        self.assertIn("metrics.loss", str(raised.exception))

    def test_bad_arguments(self):
        self.start_agent()
        with self.assertRaises(ValueError):
            sweepd.report(step=0)
        with self.assertRaises(ValueError):
            sweepd.report(step=0, reduce="median", loss=1.0)

    def test_a_restarted_agent_gets_the_request_again(self):
        first = self.start_agent()
        self.assertTrue(sweepd.report(step=0, loss=1.0))
        first.crash()
        os.unlink(first.path)
        second = []

        def restart():
            second.append(StandInAgent(first.path))

        timer = threading.Timer(0.5, restart)
        timer.start()
        self.assertTrue(sweepd.report(step=1, loss=0.5))  # waits for the new agent
        timer.join()
        self.addCleanup(second[0].close)
        self.assertEqual([r["step"] for r in first.requests], [0])
        self.assertEqual([r["step"] for r in second[0].requests], [1])

    def test_unreachable_agent_is_a_clear_error(self):
        os.environ["SWEEPD_RECONNECT_SECONDS"] = "0.3"
        os.environ["SWEEP_SOCKET"] = os.path.join(self.dir, "missing.sock")
        with self.assertRaises(sweepd.SweepdError) as raised:
            sweepd.report(loss=1.0)
        self.assertIn("missing.sock", str(raised.exception))

    def test_outside_a_sweep_report_logs_and_continues(self):
        os.environ.pop("SWEEP_SOCKET", None)
        buf = io.StringIO()
        with redirect_stderr(buf):
            self.assertTrue(sweepd.report(step=3, loss=0.25))
        self.assertIn("step=3 loss=0.25", buf.getvalue())

    def test_finish_sends_final_metrics(self):
        agent = self.start_agent()
        sweepd.report(step=0, loss=1.0)
        sweepd.finish(loss=0.125)
        self.assertEqual(agent.requests[-1]["op"], "finish")
        self.assertEqual(agent.requests[-1]["metrics"], {"loss": 0.125})


    def test_save_checkpoint_writes_then_tells_and_keeps_what_may_be_asked_for(self):
        agent = self.start_agent()
        os.environ["SWEEP_CHECKPOINT_DIR"] = os.path.join(self.dir, "ckpt")
        for step in range(3):
            path = sweepd.save_checkpoint({"step": step, "w": [step] * 3}, step=step)
            # The file is complete before sweepd hears of it.
            self.assertTrue(os.path.exists(path))
            self.assertEqual(agent.requests[-1], {"op": "checkpoint", "step": step,
                                                  "trial": "s-test-0001"})
        # Step 1 is the newest sweepd has stored: a retry may ask for it or for 2, not for 0.
        self.assertEqual(sorted(os.listdir(os.environ["SWEEP_CHECKPOINT_DIR"])),
                         ["ckpt-1-checkpoint.pt", "ckpt-2-checkpoint.pt"])
        # A first attempt has nothing to resume.
        self.assertIsNone(sweepd.resume_step())
        self.assertIsNone(sweepd.load_checkpoint())

    def test_a_checkpoint_a_pbt_copy_still_needs_is_kept_until_the_pin_goes(self):
        agent = self.start_agent()
        folder = os.path.join(self.dir, "ckpt")
        os.environ["SWEEP_CHECKPOINT_DIR"] = folder
        sweepd.save_checkpoint({"step": 0}, step=0)
        sweepd.save_checkpoint({"step": 1}, step=1)
        agent.keep = 1  # sweepd made a copy of this trial at step 1; it has not started yet
        for step in range(2, 5):
            sweepd.save_checkpoint({"step": step}, step=step)
        self.assertEqual(sorted(os.listdir(folder)), ["ckpt-1-checkpoint.pt", "ckpt-3-checkpoint.pt",
                                                      "ckpt-4-checkpoint.pt"])
        agent.keep = None  # the copy has started: step 1 may go with the next answer
        sweepd.save_checkpoint({"step": 5}, step=5)
        self.assertEqual(sorted(os.listdir(folder)), ["ckpt-4-checkpoint.pt",
                                                      "ckpt-5-checkpoint.pt"])

    def test_load_checkpoint_loads_the_step_sweepd_recorded(self):
        self.start_agent()
        os.environ["SWEEP_CHECKPOINT_DIR"] = os.path.join(self.dir, "ckpt")
        sweepd.save_checkpoint({"step": 3}, step=3)
        # Written by a dying attempt after it: sweepd never heard of it, so it is not loaded.
        sweepd._write_atomically(sweepd._checkpoint_path(5, "checkpoint.pt"),
                                 lambda f: f.write(b"not a pickle"))
        os.environ["SWEEP_RESUME_STEP"] = "3"
        self.assertEqual(sweepd.resume_step(), 3)
        self.assertEqual(sweepd.load_checkpoint(), {"step": 3})
        os.environ["SWEEP_RESUME_STEP"] = "4"
        with self.assertRaises(sweepd.SweepdError) as raised:
            sweepd.load_checkpoint()
        self.assertIn("ckpt-4-checkpoint.pt", str(raised.exception))
        self.assertIn("checkpoint.dir", str(raised.exception))

    def test_checkpoint_needs_a_step(self):
        self.start_agent()
        with self.assertRaises(ValueError):
            sweepd.checkpoint_saved(-1)

    def test_a_preempted_answer_asks_for_a_checkpoint(self):
        self.start_agent(preempt_at=2)
        self.assertTrue(sweepd.report(step=1, loss=1.0))
        self.assertFalse(sweepd.should_checkpoint())
        self.assertFalse(sweepd.report(step=2, loss=1.0))
        self.assertTrue(sweepd.should_checkpoint())
        self.assertTrue(sweepd.stop_reason().startswith("preempted"))

    def test_sigterm_is_preemption_inside_a_sweep(self):
        agent = self.start_agent()
        self.assertTrue(sweepd.report(step=0, loss=1.0))  # installs the handler
        os.kill(os.getpid(), signal.SIGTERM)  # the process lives: the handler took it
        self.assertTrue(sweepd.should_checkpoint())
        self.assertFalse(sweepd.report(step=1, loss=0.5))  # still reported, answered "leave"
        self.assertEqual([r["step"] for r in agent.requests], [0, 1])
        self.assertEqual(sweepd.stop_reason(), "preempted: SIGTERM")

    def test_sigterm_after_a_stop_for_good_ends_the_process(self):
        import subprocess

        agent = self.start_agent(stop_at=0)
        script = ("import os, signal, sys, time\n"
                  "sys.path.insert(0, %r)\n"
                  "import sweepd\n"
                  "assert not sweepd.report(step=0, loss=1.0)\n"
                  "os.kill(os.getpid(), signal.SIGTERM)\n"
                  "time.sleep(5)\n"
                  "print('survived')\n" % os.path.dirname(os.path.dirname(sweepd.__file__)))
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              env=dict(os.environ), timeout=60)
        self.assertEqual(done.returncode, -signal.SIGTERM, done.stderr)
        self.assertNotIn("survived", done.stdout)
        self.assertEqual(len(agent.requests), 1)


if __name__ == "__main__":
    unittest.main()
