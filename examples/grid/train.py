#!/usr/bin/env python3
"""Logistic regression on two overlapping gaussian blobs (standard library only).

Prints one line per epoch: epoch=<e> train_loss=<x> val_loss=<y> val_acc=<z>
Under sweepd (SWEEP_SOCKET set) it also reports each epoch through the
`sweepd` client and stops early when the scheduler says so.
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


def make_blobs(n=300, seed=0):
    """Two 2-D gaussian blobs that overlap a little; 80/20 train/val split."""
    rng = random.Random(seed)
    data = []
    for i in range(n):
        label = i % 2
        cx, cy = (2.5, 2.5) if label else (1.0, 1.5)
        data.append((cx + rng.gauss(0, 0.9), cy + rng.gauss(0, 0.9), label))
    rng.shuffle(data)
    split = int(0.8 * n)
    return data[:split], data[split:]


def predict(w, x0, x1):
    z = w[0] * x0 + w[1] * x1 + w[2]
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def bce(p, label):
    p = min(max(p, 1e-12), 1.0 - 1e-12)
    return -math.log(p) if label else -math.log(1.0 - p)


def evaluate(w, data):
    loss = correct = 0.0
    for x0, x1, label in data:
        p = predict(w, x0, x1)
        loss += bce(p, label)
        correct += (p >= 0.5) == bool(label)
    return loss / len(data), correct / len(data)


def train_epoch(w, velocity, data, args, rng):
    rng.shuffle(data)
    beta = args.momentum if args.optimizer == "momentum" else 0.0
    total = 0.0
    for start in range(0, len(data), args.batch_size):
        batch = data[start:start + args.batch_size]
        grad = [0.0, 0.0, 0.0]
        for x0, x1, label in batch:
            p = predict(w, x0, x1)
            total += bce(p, label)
            d = p - label
            grad[0] += d * x0
            grad[1] += d * x1
            grad[2] += d
        for i in range(3):
            velocity[i] = beta * velocity[i] + grad[i] / len(batch)
            w[i] -= args.lr * velocity[i]
    return total / len(data)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--optimizer", choices=["sgd", "momentum"], default="momentum")
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    train, val = make_blobs(seed=0)
    rng = random.Random(args.seed)
    w = [0.0, 0.0, 0.0]  # weight x0, weight x1, bias
    velocity = [0.0, 0.0, 0.0]
    reporter = get_reporter()
    for epoch in range(1, args.epochs + 1):
        train_loss = train_epoch(w, velocity, train, args, rng)
        val_loss, val_acc = evaluate(w, val)
        metrics = {"train_loss": train_loss, "val_loss": val_loss, "val_acc": val_acc}
        print(f"epoch={epoch} " + " ".join(f"{k}={v:.6f}" for k, v in metrics.items()), flush=True)
        if reporter is not None and reporter.report(step=epoch, **metrics) is False:
            print(f"stopped by sweepd after epoch {epoch}", file=sys.stderr, flush=True)
            break


if __name__ == "__main__":
    main()
