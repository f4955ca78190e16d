"""Linear evaluation: L2-regularised multinomial logistic regression on frozen features.

Protocol of the paper (B.2, following Chen et al. / Kornblith et al.):

* features: pooled encoder output of centre-cropped images (features.py);
  standardised with the mean/std of the data the head is fitted on, so one grid of
  regularisation values means the same for every architecture (``standardize``);
* objective, minimised with full-batch L-BFGS (strong-Wolfe line search, float64 on
  CPU or GPU; small CPU problems run single-threaded, which is much faster)::

      mean_i CE(W x_i + b, y_i) + (lam / 2) * ||W||^2        (bias not penalised)

  ``lam`` is the paper's "regularisation parameter": larger = stronger. The grid
  ``c_grid`` holds these lam values (45 log-spaced from 1e-6 to 1e5 by default). In
  scikit-learn terms, ``LogisticRegression(C=C, solver="lbfgs")`` minimises
  ``C * sum_i CE + ||W||^2 / 2``, i.e. ``C = 1 / (lam * N_train)``; the output JSON
  records both;
* selection: the grid is walked from the strongest to the weakest regularisation,
  each fit warm-started from the previous one (a regularisation path); the value with
  the best validation accuracy wins, ties broken by the lower validation
  cross-entropy;
* validation split: ``val_split`` rows if the manifest has them, else a seeded
  hold-out ``val_fraction`` of the training rows;
* final head: refitted with the chosen lam on train + validation (``refit_on_train_val``,
  as Kornblith et al.), then evaluated on the test split.

Parameters: oacl.evaluate.params ``DEFAULTS["linear"]``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


def reg_grid(c_grid: dict) -> np.ndarray:
    """The lam values, ascending: n values log-spaced from min to max."""
    lo, hi, n = float(c_grid["min"]), float(c_grid["max"]), int(c_grid["n"])
    if not (0 < lo <= hi) or n < 1:
        raise ValueError(f"c_grid: need 0 < min <= max and n >= 1, got {c_grid}")
    return np.logspace(np.log10(lo), np.log10(hi), n)


@dataclass
class LinearHead:
    """A fitted head: logits = ((x - mean) / std) @ W + b."""

    W: np.ndarray  # (C, K)
    b: np.ndarray  # (K,)
    mean: np.ndarray
    std: np.ndarray
    classes: np.ndarray  # label value of each logit
    lam: float

    def logits(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.mean) / self.std) @ self.W + self.b

    def predict(self, X: np.ndarray) -> np.ndarray:
        if len(X) == 0:
            return np.zeros(0, dtype=self.classes.dtype)
        return self.classes[np.argmax(self.logits(X), axis=1)]

    def accuracy(self, X: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(self.predict(X) == y)) if len(y) else float("nan")

    def cross_entropy(self, X: np.ndarray, y: np.ndarray) -> float:
        """Mean CE; labels outside the training classes count as probability ~0."""
        z = self.logits(X)
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        idx = np.searchsorted(self.classes, y).clip(0, len(self.classes) - 1)
        known = self.classes[idx] == y
        picked = np.where(known, logp[np.arange(len(y)), idx], -50.0)
        return float(-picked.mean()) if len(y) else float("nan")


def _stats(X: np.ndarray, standardize: bool):
    if not standardize:
        return np.zeros(X.shape[1], X.dtype), np.ones(X.shape[1], X.dtype)
    mean = X.mean(axis=0)
    std = X.std(axis=0)
    return mean, np.where(std > 1e-8, std, 1.0)


# below this many feature values a CPU fit runs single-threaded: the matmuls are tiny
# and thread hand-offs dominate (measured 8x slower with 2 threads on a busy 2-core
# machine; see the bench_linear.py script in the evaluate hand-off notes)
SINGLE_THREAD_BELOW = 1 << 22


@contextlib.contextmanager
def _cpu_threads(numel: int, device: str):
    import torch

    if device != "cpu" or numel >= SINGLE_THREAD_BELOW:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _Problem:
    """Standardised training data on the device, with an L-BFGS fit for any lam."""

    def __init__(self, X, y, classes, standardize=True, device="cpu"):
        import torch

        self.mean, self.std = _stats(X.astype(np.float64), standardize)
        # float64 everywhere: at strong regularisation the optimum moves the loss by
        # less than float32 resolves, and a float32 L-BFGS stops at a different point
        self.dtype = torch.float64
        self.device = device
        Xs = (X.astype(np.float64) - self.mean) / self.std
        self.X = torch.as_tensor(Xs, dtype=self.dtype, device=device)
        self.y = torch.as_tensor(np.searchsorted(classes, y), device=device)
        self.classes = classes
        self.W = torch.zeros(X.shape[1], len(classes), dtype=self.dtype, device=device)
        self.b = torch.zeros(len(classes), dtype=self.dtype, device=device)

    def fit(self, lam: float, max_iter: int, tol: float) -> LinearHead:
        """Fit from the current (warm-start) weights; returns the head."""
        import torch
        import torch.nn.functional as F

        W = self.W.clone().requires_grad_(True)
        b = self.b.clone().requires_grad_(True)
        opt = torch.optim.LBFGS(
            [W, b],
            lr=1.0,
            max_iter=max_iter,
            history_size=20,
            tolerance_grad=tol,
            tolerance_change=1e-12,
            line_search_fn="strong_wolfe",
        )

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(self.X @ W + b, self.y) + 0.5 * lam * (W * W).sum()
            loss.backward()
            return loss

        with _cpu_threads(self.X.numel(), self.device):
            opt.step(closure)
        self.W, self.b = W.detach(), b.detach()
        return LinearHead(
            self.W.cpu().numpy().astype(np.float64),
            self.b.cpu().numpy().astype(np.float64),
            self.mean,
            self.std,
            self.classes,
            float(lam),
        )


def fit_head(X, y, lam, max_iter=300, tol=1e-7, standardize=True, device="cpu") -> LinearHead:
    """One L2-regularised multinomial logistic regression (cold start)."""
    classes = np.unique(y)
    return _Problem(X, y, classes, standardize, device).fit(lam, max_iter, tol)


def select_lambda(
    Xtr, ytr, Xval, yval, grid, max_iter=300, tol=1e-7, standardize=True, device="cpu"
) -> tuple[float, list[dict]]:
    """Walk the grid from strong to weak regularisation (warm starts); pick by val acc.

    Returns (chosen lam, path) where path lists {lambda, val_acc, val_loss, train_acc}
    in ascending lam order.
    """
    from ..progress import progress as progress_bar

    classes = np.unique(ytr)
    prob = _Problem(Xtr, ytr, classes, standardize, device)
    path = []
    for lam in progress_bar(sorted(grid, reverse=True), desc="L-BFGS grid", unit="lam"):
        head = prob.fit(float(lam), max_iter, tol)
        path.append(
            {
                "lambda": float(lam),
                "val_acc": head.accuracy(Xval, yval),
                "val_loss": head.cross_entropy(Xval, yval),
                "train_acc": head.accuracy(Xtr, ytr),
            }
        )
    path.sort(key=lambda r: r["lambda"])
    best = max(path, key=lambda r: (r["val_acc"], -r["val_loss"]))
    return best["lambda"], path


def holdout_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, val) index split of n rows; val gets round(fraction * n) >= 1 rows."""
    if n < 2:
        raise ValueError(f"need at least 2 training rows to hold out a validation set, got {n}")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(min(n - 1, max(1, round(fraction * n))))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _labelled(d: dict) -> dict:
    keep = d["labels"] >= 0
    return {k: v[keep] for k, v in d.items()}


# linear parameters that do not change the fitted head (see reusable_selection)
_NOT_HEAD = ("device", "batch_size", "test_split")


def reusable_selection(linear_result: dict, p: dict, checkpoint, manifest) -> dict | None:
    """The lam selection of a linear.json if it was made for the same head, else None.

    Shift evaluation fits the same head as linear evaluation (same checkpoint,
    manifest, splits and grid); reusing the chosen lam skips a second 45-value path.
    """
    if str(linear_result.get("checkpoint")) != str(checkpoint) or str(
        linear_result.get("manifest")
    ) != str(manifest):
        return None
    theirs = {k: v for k, v in linear_result.get("params", {}).items() if k not in _NOT_HEAD}
    ours = {k: v for k, v in p.items() if k not in _NOT_HEAD}
    if theirs != ours or "lambda" not in linear_result or "path" not in linear_result:
        return None
    return {k: linear_result[k] for k in ("lambda", "val_acc", "val_source", "path")}


def fit_with_selection(
    cache,
    p: dict,
    train_split: str,
    val_split: str,
    variant: str = "original",
    selected: dict | None = None,
):
    """Select lam on validation data and fit the final head. Returns (head, info dict).

    ``selected`` (from ``reusable_selection``) gives a lam already chosen on exactly
    this problem: the grid walk is skipped and its record copied.
    """
    dev = cache.device
    tr = _labelled(cache.get(train_split, variant))
    if len(tr["labels"]) == 0:
        raise ValueError(
            f"no labelled rows in split {train_split!r} variant {variant!r} "
            f"(column {p['label_column']!r}) of the manifest"
        )
    has_val = bool(((cache.df["split"] == val_split) & (cache.df["variant"] == variant)).any())
    if has_val:
        va = _labelled(cache.get(val_split, variant))
        fit_tr, val_source = tr, f"split {val_split!r}"
    else:
        i_tr, i_va = holdout_split(len(tr["labels"]), p["val_fraction"], p["seed"])
        fit_tr = {k: v[i_tr] for k, v in tr.items()}
        va = {k: v[i_va] for k, v in tr.items()}
        val_source = f"hold-out {p['val_fraction']} of {train_split!r} (seed {p['seed']})"
    t0 = time.perf_counter()
    if selected is not None:
        lam, path = float(selected["lambda"]), selected["path"]
    else:
        lam, path = select_lambda(
            fit_tr["features"],
            fit_tr["labels"],
            va["features"],
            va["labels"],
            reg_grid(p["c_grid"]),
            p["max_iter"],
            p["tol"],
            p["standardize"],
            dev,
        )
    t_select = time.perf_counter() - t0
    if p["refit_on_train_val"]:
        X = np.concatenate([fit_tr["features"], va["features"]])
        y = np.concatenate([fit_tr["labels"], va["labels"]])
    else:
        X, y = fit_tr["features"], fit_tr["labels"]
    head = fit_head(X, y, lam, p["max_iter"], p["tol"], p["standardize"], dev)
    info = {
        "lambda": lam,
        "sklearn_C": 1.0 / (lam * len(y)),
        "val_source": val_source,
        "val_acc": next(r["val_acc"] for r in path if r["lambda"] == lam),
        "n": {
            "fit": int(len(fit_tr["labels"])),
            "val": int(len(va["labels"])),
            "final_fit": int(len(y)),
        },
        "n_classes": int(len(head.classes)),
        "feature_dim": int(X.shape[1]),
        "path": path,
        "selection": "reused from linear evaluation" if selected is not None else "grid",
        "timing": {"select_s": t_select, "refit_s": time.perf_counter() - t0 - t_select},
    }
    return head, info


def run_linear(params: dict, checkpoint, manifest, cache_dir) -> dict:
    """The `oacl evaluate linear` computation: result dict for linear.json."""
    from .features import FeatureCache

    p = params
    t0 = time.perf_counter()
    cache = FeatureCache(
        checkpoint,
        manifest,
        cache_dir,
        p["batch_size"],
        p["device"],
        p["label_column"],
        p["crop_ratio"],
    )
    head, info = fit_with_selection(cache, p, p["train_split"], p["val_split"], p["variant"])
    te = _labelled(cache.get(p["test_split"], p["variant"]))
    if len(te["labels"]) == 0:
        raise ValueError(f"no labelled rows in test split {p['test_split']!r} of the manifest")
    info["n"]["test"] = int(len(te["labels"]))
    return {
        "test_acc": head.accuracy(te["features"], te["labels"]),
        "train_acc": head.accuracy(*_xy(cache.get(p["train_split"], p["variant"]))),
        **info,
        "timing": {**info["timing"], "total_s": time.perf_counter() - t0},
        "cache": {"hits": cache.hits, "misses": cache.misses},
        "checkpoint": str(checkpoint),
        "manifest": str(manifest),
        "params": p,
    }


def _xy(d: dict):
    d = _labelled(d)
    return d["features"], d["labels"]
