#!/usr/bin/env python3
"""One-hidden-layer MLP on a synthetic two-moons dataset (standard library only).

Prints one line per epoch: epoch=<e> train_loss=<x> val_loss=<y> val_acc=<z>
Under sweepd (SWEEP_SOCKET set) it also reports each epoch through the
`sweepd` client and stops early when the scheduler prunes the trial.
"""
import argparse
import math
import os
import random
import sys


def get_reporter():
    """Return the sweepd module when running under sweepd, else None."""
    if not os.environ.get("SWEEP_SOCKET"):
        return None
    try:
        import sweepd
    except ImportError:
        # Running from a source checkout: try <repo>/python as well.
        repo_python = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python")
        sys.path.append(os.path.normpath(repo_python))
        try:
            import sweepd
        except ImportError:
            return None
    return sweepd


def make_moons(n=300, noise=0.2, seed=0):
    """Two interleaved half circles, shuffled, split 80/20 into train/val."""
    rng = random.Random(seed)
    data = []
    for i in range(n):
        t = math.pi * rng.random()
        if i % 2 == 0:
            x, y, label = math.cos(t), math.sin(t), 0
        else:
            x, y, label = 1.0 - math.cos(t), 0.5 - math.sin(t), 1
        # centre and scale roughly to [-1, 1]
        data.append(((x - 0.5 + rng.gauss(0, noise)) / 1.2, (y - 0.25 + rng.gauss(0, noise)) / 0.8, label))
    rng.shuffle(data)
    split = int(0.8 * n)
    return data[:split], data[split:]


def sigmoid(z):
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def bce(p, label):
    p = min(max(p, 1e-12), 1.0 - 1e-12)
    return -math.log(p) if label else -math.log(1.0 - p)


def forward(model, x0, x1):
    w1, b1, w2, b2 = model
    h = [math.tanh(a * x0 + b * x1 + c) for (a, b), c in zip(w1, b1)]
    return h, sigmoid(sum(w * v for w, v in zip(w2, h)) + b2[0])


def evaluate(model, data):
    loss = correct = 0.0
    for x0, x1, label in data:
        _, p = forward(model, x0, x1)
        loss += bce(p, label)
        correct += (p >= 0.5) == bool(label)
    return loss / len(data), correct / len(data)


def train_epoch(model, data, lr, weight_decay, batch_size, rng):
    w1, b1, w2, b2 = model
    hidden = len(w2)
    rng.shuffle(data)
    total = 0.0
    for start in range(0, len(data), batch_size):
        batch = data[start:start + batch_size]
        gw1 = [[0.0, 0.0] for _ in range(hidden)]
        gb1 = [0.0] * hidden
        gw2 = [0.0] * hidden
        gb2 = 0.0
        for x0, x1, label in batch:
            h, p = forward(model, x0, x1)
            total += bce(p, label)
            d = p - label  # dLoss/dlogit for sigmoid + BCE
            gb2 += d
            for j in range(hidden):
                gw2[j] += d * h[j]
                dh = d * w2[j] * (1.0 - h[j] * h[j])
                gw1[j][0] += dh * x0
                gw1[j][1] += dh * x1
                gb1[j] += dh
        step = lr / len(batch)
        for j in range(hidden):
            w2[j] -= step * gw2[j] + lr * weight_decay * w2[j]
            w1[j][0] -= step * gw1[j][0] + lr * weight_decay * w1[j][0]
            w1[j][1] -= step * gw1[j][1] + lr * weight_decay * w1[j][1]
            b1[j] -= step * gb1[j]
        b2[0] -= step * gb2
    return total / len(data)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=0.3)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--weight_decay", type=float, default=1e-4)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    train, val = make_moons(seed=0)
    rng = random.Random(args.seed)
    scale = 1.0 / math.sqrt(2.0)
    model = (
        [[rng.gauss(0, scale), rng.gauss(0, scale)] for _ in range(args.hidden)],
        [0.0] * args.hidden,
        [rng.gauss(0, 1.0 / math.sqrt(args.hidden)) for _ in range(args.hidden)],
        [0.0],
    )
    reporter = get_reporter()
    for epoch in range(1, args.epochs + 1):
        train_loss = train_epoch(model, train, args.lr, args.weight_decay, args.batch_size, rng)
        val_loss, val_acc = evaluate(model, val)
        metrics = {"train_loss": train_loss, "val_loss": val_loss, "val_acc": val_acc}
        print(f"epoch={epoch} " + " ".join(f"{k}={v:.6f}" for k, v in metrics.items()), flush=True)
        if reporter is not None and reporter.report(step=epoch, **metrics) is False:
            print(f"stopped by sweepd after epoch {epoch}", file=sys.stderr, flush=True)
            break


if __name__ == "__main__":
    main()
