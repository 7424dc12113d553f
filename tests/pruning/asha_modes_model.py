"""An independent model of ASHA's two modes on checkpoint_e2e_test's toy problem.

One worker, the grid in order, loss = 1/(step+1) + 1000 (x-0.3)^2 reported at steps 0..8, rungs at
steps 1 and 3 (min_resource 1, max_resource 9, eta 3). `kill` is Optuna's successive-halving
rule (a trial goes on past a rung if its value is within the top floor(n/eta) of the n recorded
there, the best always); `promotion` is Li et al. (MLSys 2020) Algorithm 2: a trial stops at each
rung and a free worker promotes, from the highest rung down, a trial in the top floor(n_k/eta) of
rung k not yet promoted, before it starts a new one. Prints the steps each runs and the best.
"""
# Distinct distances from 0.3, scaled so far apart that the step's term never reorders trials:
# a trial that runs a step or two past a rung before its pause arrives ranks the same.
xs = [0.95, 0.7, 0.55, 0.3, 0.1, 0.8, 0.62, 0.4, 0.22]
SCALE = 1000.0
rungs = [1, 3]
STEPS = 9
def loss(x, step): return 1.0 / (step + 1) + SCALE * (x - 0.3) ** 2

def kill():
    rec = {0: [], 1: []}
    steps = 0
    best = None
    for t, x in enumerate(xs):
        nxt = 0
        for step in range(STEPS):
            steps += 1
            v = loss(x, step)
            if best is None or v < best[0]: best = (v, x)
            if nxt < len(rungs) and step >= rungs[nxt]:
                rec[nxt].append((v, t)); r = sorted(rec[nxt]); n = len(r)
                top = n // 3
                thr = r[0 if top == 0 else top - 1][0]
                nxt += 1
                if v > thr: break
    return steps, best

def promotion():
    rec = {0: [], 1: []}      # (value, trial) recorded per rung
    size = {}                 # rungs recorded per trial
    paused = {}               # trial -> next step
    steps = 0; best = None; promotions = 0
    queue = list(range(len(xs)))
    def next_promotion(waiting):
        for k in reversed(range(len(rungs))):
            r = sorted(rec[k]); top = len(r) // 3
            for v, t in r[:top]:
                if size.get(t, 0) == k + 1 and waiting(t): return t
        return None
    def run(t, start):
        nonlocal steps, best, promotions
        x = xs[t]
        for step in range(start, STEPS):
            steps += 1
            v = loss(x, step)
            if best is None or v < best[0]: best = (v, x)
            k = size.get(t, 0)
            if k < len(rungs) and step >= rungs[k]:
                rec[k].append((v, t)); size[t] = k + 1
                n = next_promotion(lambda u: u == t or u in paused)
                if n == t:
                    promotions += 1; continue
                paused[t] = step + 1
                return
    while True:
        n = next_promotion(lambda u: u in paused)
        if n is not None:
            start = paused.pop(n); promotions += 1; run(n, start); continue
        if queue:
            run(queue.pop(0), 0); continue
        break
    return steps, best, promotions, sorted(paused)

print("kill", kill())
print("promotion", promotion())
