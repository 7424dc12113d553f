"""Optuna's TPE on the search-quality test functions (the same as bench/search_functions.h).

Usage: /usr/bin/python3 optuna_search_driver.py --trials 100 --seeds 20 [--first-seed 0]
       [--multivariate]
Prints one JSON object: {"function": [best value per seed, ...], ...}.
"""

import argparse
import json
import math

import optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)

A = [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8],
     [17, 8, 0.05, 10, 0.1, 14]]
P = [[0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
     [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
     [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
     [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381]]
ALPHA = [1.0, 1.2, 3.0, 3.2]


def branin(t):
    x1, x2 = t.suggest_float("x0", -5, 10), t.suggest_float("x1", 0, 15)
    b, c, s = 5.1 / (4 * math.pi ** 2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1 * x1 + c * x1 - 6) ** 2 + 10 * (1 - s) * math.cos(x1) + 10


def hartmann6(t):
    x = [t.suggest_float("x%d" % i, 0, 1) for i in range(6)]
    return -sum(ALPHA[i] * math.exp(-sum(A[i][j] * (x[j] - P[i][j]) ** 2 for j in range(6)))
                for i in range(4))


def rosenbrock4(t):
    x = [t.suggest_float("x%d" % i, -5, 10) for i in range(4)]
    return sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(3))


def ackley5(t):
    x = [t.suggest_float("x%d" % i, -32.768, 32.768) for i in range(5)]
    return (-20 * math.exp(-0.2 * math.sqrt(sum(v * v for v in x) / 5))
            - math.exp(sum(math.cos(2 * math.pi * v) for v in x) / 5) + 20 + math.e)


def mixed(t):
    lr = t.suggest_float("lr", 1e-5, 1e-1, log=True)
    layers = t.suggest_int("layers", 1, 8)
    act = t.suggest_categorical("act", ["relu", "tanh", "sigmoid"])
    return (math.log10(lr) + 3) ** 2 + (layers - 3) ** 2 / 4 + {"relu": 0, "tanh": 0.5,
                                                                "sigmoid": 1}[act]


FUNCTIONS = {"branin": branin, "hartmann6": hartmann6, "rosenbrock4": rosenbrock4,
             "ackley5": ackley5, "mixed": mixed}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--multivariate", action="store_true")
    args = parser.parse_args()
    out = {}
    for name, fn in FUNCTIONS.items():
        bests = []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            sampler = optuna.samplers.TPESampler(seed=seed, multivariate=args.multivariate)
            study = optuna.create_study(sampler=sampler)
            study.optimize(fn, n_trials=args.trials)
            bests.append(study.best_value)
        out[name] = bests
    print(json.dumps(out))


if __name__ == "__main__":
    main()
