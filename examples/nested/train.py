#!/usr/bin/env python3
"""MLP on two moons, configured by nested (dotted) sweep parameters.

Takes the flattened names of the nested W&B parameters, e.g.
    python3 train.py --optimizer.name=momentum --optimizer.lr=0.05 \
        --optimizer.momentum=0.9 --model.hidden=16
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
        data.append(((x - 0.5 + rng.gauss(0, noise)) / 1.2, (y - 0.25 + rng.gauss(0, noise)) / 0.8, label))
    rng.shuffle(data)
    split = int(0.8 * n)
    return data[:split], data[split:]


def forward(m, x0, x1):
    """Hidden activations and P(label=1); m holds flat parameter lists."""
    h = [math.tanh(a * x0 + b * x1 + c) for a, b, c in zip(m["wa"], m["wb"], m["b1"])]
    z = sum(w * v for w, v in zip(m["w2"], h)) + m["b2"][0]
    p = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
    return h, p


def bce(p, label):
    p = min(max(p, 1e-12), 1.0 - 1e-12)
    return -math.log(p) if label else -math.log(1.0 - p)


def evaluate(m, data):
    loss = correct = 0.0
    for x0, x1, label in data:
        _, p = forward(m, x0, x1)
        loss += bce(p, label)
        correct += (p >= 0.5) == bool(label)
    return loss / len(data), correct / len(data)


def train_epoch(m, velocity, data, args, rng):
    beta = args.optimizer_momentum if args.optimizer_name == "momentum" else 0.0
    hidden = len(m["w2"])
    rng.shuffle(data)
    total = 0.0
    for start in range(0, len(data), args.batch_size):
        batch = data[start:start + args.batch_size]
        g = {k: [0.0] * len(v) for k, v in m.items()}
        for x0, x1, label in batch:
            h, p = forward(m, x0, x1)
            total += bce(p, label)
            d = p - label  # dLoss/dlogit for sigmoid + BCE
            g["b2"][0] += d
            for j in range(hidden):
                g["w2"][j] += d * h[j]
                dh = d * m["w2"][j] * (1.0 - h[j] * h[j])
                g["wa"][j] += dh * x0
                g["wb"][j] += dh * x1
                g["b1"][j] += dh
        for k, params in m.items():
            vel, grad = velocity[k], g[k]
            for j in range(len(params)):
                vel[j] = beta * vel[j] + grad[j] / len(batch)
                params[j] -= args.optimizer_lr * vel[j]
    return total / len(data)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer.name", dest="optimizer_name", choices=["sgd", "momentum"], default="momentum")
    parser.add_argument("--optimizer.lr", dest="optimizer_lr", type=float, default=0.05)
    parser.add_argument("--optimizer.momentum", dest="optimizer_momentum", type=float, default=0.9)
    parser.add_argument("--model.hidden", dest="model_hidden", type=int, default=16)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    train, val = make_moons(seed=0)
    rng = random.Random(args.seed)
    n = args.model_hidden
    m = {
        "wa": [rng.gauss(0, 0.7) for _ in range(n)],
        "wb": [rng.gauss(0, 0.7) for _ in range(n)],
        "b1": [0.0] * n,
        "w2": [rng.gauss(0, 1.0 / math.sqrt(n)) for _ in range(n)],
        "b2": [0.0],
    }
    velocity = {k: [0.0] * len(v) for k, v in m.items()}
    reporter = get_reporter()
    for epoch in range(1, args.epochs + 1):
        train_loss = train_epoch(m, velocity, train, args, rng)
        val_loss, val_acc = evaluate(m, val)
        metrics = {"train_loss": train_loss, "val_loss": val_loss, "val_acc": val_acc}
        print(f"epoch={epoch} " + " ".join(f"{k}={v:.6f}" for k, v in metrics.items()), flush=True)
        if reporter is not None and reporter.report(step=epoch, **metrics) is False:
            print(f"stopped by sweepd after epoch {epoch}", file=sys.stderr, flush=True)
            break


if __name__ == "__main__":
    main()
