"""A resumable PyTorch training of a small MLP on scikit-learn's digits, for method pbt.

Each epoch it saves a checkpoint (model and optimizer) through sweepd.save_checkpoint and
reports the validation loss; on start it loads the checkpoint sweepd names (a retry's own, or
for a pbt copy its parent's), sets the optimizer's lr and momentum to this trial's (explore may
have changed them), and goes on from the next epoch. Plain SGD on a deliberately small batch
makes the learning rate matter along the way, which is what pbt tunes.

$EPOCH_SECONDS (default 0) makes each epoch take at least that long, standing in for a real
model's GPU time, so that a process start (importing torch) costs what it costs next to a real
epoch; bench/pbt_digits.py sets it.

Runs by hand too (no sweep): /usr/bin/python3 train.py --lr=0.05 --momentum=0.9
"""

import os
import time

import torch
import torch.nn as nn
from sklearn.datasets import load_digits

import sweepd

p = sweepd.flat_params()
lr = float(p.get("lr", 0.05))
momentum = float(p.get("momentum", 0.9))
epochs = int(p.get("epochs", 20))
epoch_seconds = float(os.environ.get("EPOCH_SECONDS", "0"))
hidden = int(p.get("hidden", 32))
torch.set_num_threads(1)

x, y = load_digits(return_X_y=True)
order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
x = torch.tensor(x, dtype=torch.float32)[order] / 16.0
y = torch.tensor(y, dtype=torch.long)[order]
# A small training set and a held-out one, as in a real sweep: val_loss is what is tuned.
x_train, y_train, x_val, y_val = x[:1000], y[:1000], x[1000:], y[1000:]

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(64, hidden), nn.Tanh(), nn.Linear(hidden, 10))
optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
loss_fn = nn.CrossEntropyLoss()

state = sweepd.load_checkpoint()
start = 0
if state is not None:
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    for group in optimizer.param_groups:  # this trial's hyperparameters, not the parent's
        group["lr"], group["momentum"] = lr, momentum
    start = state["epoch"] + 1

for epoch in range(start, epochs):
    began = time.monotonic()
    model.train()
    # The same batches for every trial at an epoch, so trials differ only in what is tuned.
    batches = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(epoch))
    for i in range(0, len(x_train), 20):
        idx = batches[i:i + 20]
        optimizer.zero_grad()
        loss_fn(model(x_train[idx]), y_train[idx]).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        logits = model(x_val)
        val_loss = loss_fn(logits, y_val).item()
        val_acc = (logits.argmax(1) == y_val).float().mean().item()
    if val_loss != val_loss:
        val_loss = 1e9  # diverged: the worst value, not NaN
    time.sleep(max(0.0, epoch_seconds - (time.monotonic() - began)))
    sweepd.save_checkpoint({"epoch": epoch, "model": model.state_dict(),
                            "optimizer": optimizer.state_dict()}, step=epoch)
    if not sweepd.report(step=epoch, val_loss=val_loss, val_acc=val_acc):
        break
sweepd.finish()
