"""A script that fails at once."""
import sys

print("something is wrong with the data", file=sys.stderr)
sys.exit(3)
