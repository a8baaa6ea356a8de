"""How the toy model's seed mean of log y approaches its exponent: n^-1 or n^-1/2?

Monte Carlo of the validate suite's toy model under gradient descent (f(x) = (W* + b a^T) x,
one output, a fixed batch of N = 8 Gaussian inputs, loss 0.5 mean (f - y)^2, LoRA+ rates with the
suite's constants eta_a = 0.05 * 128 / n, eta_b = 0.05), steps 1 and 2, under Init[1] and
Init[2]. Only the batch's Gram matrix K = X X^T and the inputs' projections on the teacher's
and A0's directions enter, so they are drawn exactly (K's part off those directions is Wishart
with n - 2 degrees of freedom) and a million seeds cost seconds at any width.

For each metric (delta1..3 at the probe = the training batch, coordinate RMS as in
``scaling.measure``) it fits the seed mean of log y against
    m(n) = m_inf + A n^-1/2 + B n^-1 + C n^-2
(weighted by the standard errors). ``scaling.theory.corrections`` predicts A = 0 (omega = 1:
zero-mean cross terms x_i^T x_j = Theta(n^1/2) move a mean log only at their square) except
where the error moves along one line and can vanish there (Init[2] from step 2, vectors built
from U(1): delta1, delta3): A != 0, omega = 1/2.

    python docs/investigations/corrections_to_scaling.py --seeds 200000
Results and their reading: docs/investigations/corrections_to_scaling.md.
"""
from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from scipy import stats

N = 8  # the toy model's batch (the probe is the whole batch)


def sample(n: int, seeds: int, init: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """log rms of delta1..3 at steps 1 and 2 for ``seeds`` independent toy models at width n."""
    ea, eb = 0.05 * 128 / n, 0.05
    g = rng.standard_normal((seeds, N, 2))                     # projections on v^ and on A0's other direction
    K = np.einsum("sik,sjk->sij", g, g) + stats.wishart(df=n - 2, scale=np.eye(N)).rvs(seeds, random_state=rng)
    vx = np.sqrt(rng.chisquare(n, seeds) / n)[:, None] * g[:, :, 0]            # v^T x, v ~ N(0, 1/n)
    u = rng.standard_normal(seeds)[:, None]                                   # teacher: y = (W* + u v^T) x
    U0 = -u * vx                                                              # error W* x - y at init
    if init == "1":  # b0 = 0, a0 ~ N(0, 1/n): a0^T x from its projections
        a0x = (rng.standard_normal(seeds) / np.sqrt(n))[:, None] * g[:, :, 0] \
            + np.sqrt(rng.chisquare(n - 1, seeds) / n)[:, None] * g[:, :, 1]
        b0, ax0 = np.zeros((seeds, 1)), a0x
    else:            # a0 = 0, b0 ~ N(0, 1)
        b0, ax0 = rng.standard_normal((seeds, 1)), np.zeros((seeds, N))

    def step(b, ax, U):  # one GD step: (db, da^T x at every sample)
        db = -eb * (U * ax).mean(1, keepdims=True)
        dax = -(ea / N) * b * np.einsum("sij,sj->si", K, U)
        return db, dax

    out = {}
    b, ax, U = b0, ax0, U0
    for t in (1, 2):
        db, dax = step(b, ax, U)
        for name, v in (("delta1", b * dax), ("delta2", db * ax), ("delta3", db * dax)):
            with np.errstate(divide="ignore"):
                out[f"{name} (step {t})"] = np.log(np.sqrt((v ** 2).mean(1)))
        b, ax = b + db, ax + dax
        U = U + b * ax - (b - db) * (ax - dax)  # the output's change b a^T x - b_old a_old^T x
    return out


def run(widths: list[int], seeds: int, inits=("1", "2"), random_state: int = 0) -> pd.DataFrame:
    """Seed mean and standard error of log y per (init, metric, width)."""
    rng = np.random.default_rng(random_state)
    rows = []
    for init in inits:
        for n in widths:
            for metric, lv in sample(n, seeds, init, rng).items():
                lv = lv[np.isfinite(lv)]
                if lv.size:
                    rows.append({"init": init, "metric": metric, "width": n, "mean_log": lv.mean(),
                                 "se": lv.std(ddof=1) / np.sqrt(lv.size)})
    return pd.DataFrame(rows)


def correction_fit(table: pd.DataFrame) -> pd.DataFrame:
    """Weighted least squares of mean_log on (1, n^-1/2, n^-1, n^-2) per (init, metric):
    the coefficients A (n^-1/2) and B (n^-1) with standard errors."""
    rows = []
    for (init, metric), g in table.groupby(["init", "metric"], sort=False):
        w = g.width.to_numpy(float)
        X = np.stack([np.ones_like(w), w ** -0.5, w ** -1, w ** -2], axis=1) / g.se.to_numpy()[:, None]
        coef, *_ = np.linalg.lstsq(X, g.mean_log.to_numpy() / g.se.to_numpy(), rcond=None)
        se = np.sqrt(np.diag(np.linalg.inv(X.T @ X)))
        rows.append({"init": init, "metric": metric, "A (n^-1/2)": f"{coef[1]:+.2f} +- {se[1]:.2f}",
                     "B (n^-1)": f"{coef[2]:+.1f} +- {se[2]:.1f}", "A / se": coef[1] / se[1]})
    return pd.DataFrame(rows)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--widths", default="16,32,64,128,256,512,1024,4096")
    p.add_argument("--seeds", type=int, default=100_000)
    p.add_argument("--out", default=None, help="CSV of the seed means")
    a = p.parse_args(argv)
    table = run([int(w) for w in a.widths.split(",")], a.seeds)
    if a.out:
        table.to_csv(a.out, index=False)
    print(correction_fit(table).round(2).to_markdown(index=False))


if __name__ == "__main__":
    main()
