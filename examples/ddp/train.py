"""Data-parallel training (PyTorch DDP) of a small MLP on scikit-learn's digits, reporting to sweepd.

Started by torchrun on every node of the trial (`launcher: torchrun` in sweep.yaml). Each rank
trains on its shard and evaluates on its own shard of the validation set; sweepd.report()
averages the validation loss over all ranks (gloo on CPU, NCCL on GPUs), global rank 0 sends it
to the agent, and every rank gets the same keep-going answer, so a pruned trial stops on all
nodes at the same epoch.

Each rank also writes its local values to local_metrics.jsonl in its trial folder, so the
integration test can check that the reported value is the mean of the ranks' values.

Runs by hand too (one process, no sweep): /usr/bin/python3 train.py --lr=0.05
"""

import json
import os
import time

import torch
import torch.distributed as dist
import torch.nn as nn
from sklearn.datasets import load_digits
from torch.nn.parallel import DistributedDataParallel

import sweepd


def main():
    p = sweepd.flat_params()
    lr = float(p.get("lr", 0.05))
    hidden = int(p.get("hidden", 64))
    epochs = int(p.get("epochs", 9))
    # Slows each epoch down (seconds), so tests can prune a trial while it runs.
    epoch_sleep = float(os.environ.get("DDP_EPOCH_SLEEP", "0"))

    distributed = "WORLD_SIZE" in os.environ and "RANK" in os.environ
    use_cuda = torch.cuda.is_available()
    if distributed:
        dist.init_process_group("nccl" if use_cuda else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
    else:
        rank, world = 0, 1
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)

    # The same split on every rank; each rank takes every world-th example of it.
    x, y = load_digits(return_X_y=True)
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(x), generator=generator)
    x = torch.tensor(x, dtype=torch.float32)[order] / 16.0
    y = torch.tensor(y, dtype=torch.long)[order]
    x_train, y_train = x[:1400][rank::world].to(device), y[:1400][rank::world].to(device)
    x_val, y_val = x[1400:][rank::world].to(device), y[1400:][rank::world].to(device)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10)).to(device)
    if distributed:
        model = DistributedDataParallel(model, device_ids=[local_rank] if use_cuda else None)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    log = open(os.path.join(os.environ.get("SWEEP_TRIAL_DIR", "."), "local_metrics.jsonl"), "a")
    for epoch in range(epochs):
        model.train()
        for start in range(0, len(x_train), 32):
            optimizer.zero_grad()
            loss = loss_fn(model(x_train[start:start + 32]), y_train[start:start + 32])
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            local_loss = loss_fn(model(x_val), y_val).item()
        log.write(json.dumps({"rank": rank, "epoch": epoch, "val_loss": local_loss}) + "\n")
        log.flush()
        print("rank %d epoch %d: local validation loss %.6f" % (rank, epoch, local_loss),
              flush=True)
        if not sweepd.report(step=epoch, val_loss=local_loss):
            print("rank %d: stopping (%s)" % (rank, sweepd.stop_reason()), flush=True)
            break
        time.sleep(epoch_sleep)
    sweepd.finish()
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
