"""A script that only prints metrics (Katib-style `name=value` lines)."""
import argparse

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.1)
parser.add_argument("--layers", type=int, default=1)
args, _ = parser.parse_known_args()
for epoch in range(5):
    print(f"epoch={epoch} loss={args.lr * args.layers / (epoch + 1):.6f} note=warmup", flush=True)
print("done", flush=True)
