"""The capacity curve's fit and figure: the paper's cubic model ``n(d)`` (Weller et al. 2025, section 4,
figure 2) fitted to measured critical n, and a PNG with the paper's points beside ours."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from embedlab.errors import InvalidInputError

PAPER_CRITICAL_N = {4: 10, 8: 28, 12: 47, 16: 79, 20: 120}
"""Critical n at k=2 read from Weller et al. (2025), figure 2."""
PAPER_CUBIC = (-10.5322, 4.0309, 0.0520, 0.0037)
"""The paper's fit ``n(d) = c0 + c1 d + c2 d^2 + c3 d^3`` (r^2 = 0.999), section 4."""


def fit_cubic(dims: Sequence[int], ns: Sequence[int]) -> tuple[tuple[float, float, float, float], float]:
    """Least-squares ``n(d) = c0 + c1 d + c2 d^2 + c3 d^3`` (the paper's model) and its r^2."""
    d = np.asarray(dims, dtype=np.float64)
    y = np.asarray(ns, dtype=np.float64)
    if len(d) < 4 or len(d) != len(y):
        raise InvalidInputError(f"fit_cubic: need >= 4 (d, n) points of equal count, got {len(d)} dims and {len(y)} ns.")
    X = np.vander(d, 4, increasing=True)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    pred = X @ coef
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float(((y - pred) ** 2).sum()) / ss_tot if ss_tot > 0 else 1.0
    return tuple(float(c) for c in coef), r2


def plot_capacity(measured: dict[int, int], path, *, coef: Sequence[float] | None = None, title: str = "") -> None:
    """Write a PNG: measured critical n per d, their cubic fit, and the paper's points and fit."""
    from matplotlib.figure import Figure  # no pyplot: no process-wide backend or figure registry

    dims = sorted(measured)
    grid = np.linspace(min(dims + list(PAPER_CRITICAL_N)), max(dims + list(PAPER_CRITICAL_N)), 200)
    fig = Figure(figsize=(6, 4), dpi=120)
    ax = fig.subplots()
    ax.plot(dims, [measured[d] for d in dims], "o", label="embedlab (measured)")
    if coef is not None:
        ax.plot(grid, np.polyval(list(coef)[::-1], grid), "-", label="embedlab cubic fit")
    ax.plot(list(PAPER_CRITICAL_N), list(PAPER_CRITICAL_N.values()), "s", mfc="none", label="Weller et al. 2025 (fig. 2)")
    ax.plot(grid, np.polyval(list(PAPER_CUBIC)[::-1], grid), "--", label="paper cubic fit")
    ax.set_xlabel("embedding dimension d")
    ax.set_ylabel("critical n (k = 2)")
    ax.set_title(title or "Free-embedding capacity (Weller et al. 2025, fig. 2)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
