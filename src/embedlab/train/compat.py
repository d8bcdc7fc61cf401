"""Compatible upgrades: search an index built by an old model with a new one, without re-encoding the documents.

Two ways, both ending in an :class:`~embedlab.models.alignment.Alignment` saved with the new model, which a
collection built by the old model accepts for queries:

- :func:`align` learns a linear map from the new model's space to the old one's on texts both encode (documents
  of the collection serve well): orthogonal Procrustes (Schönemann 1966, "A generalized solution of the orthogonal
  Procrustes problem"; the rotation that best superimposes the two point clouds, so cosines within the new space are
  kept) and ridge-regularised least squares with a bias (the form of the "transformation" baseline of Shen et al.
  2020 and of Wang et al. 2020, "Unified Representation Learning for Cross Model Compatibility"), the winner chosen
  by mean cosine on held-out texts. The collection applies the map to each query vector (``y = W x + b``, unit
  length) at search time.
- :class:`BackwardCompatible` (``fit(..., old_encoder=...)``) adds an *influence* term to contrastive training:
  InfoNCE between the new model's queries and the **old** model's vectors of the positives (and hard negatives),
  Shen et al. 2020, "Towards Backward-Compatible Representation Learning" (BCT), eq. 3, with the old model's
  document embeddings in place of its classifier. The trained model's queries then rank the old index's
  documents, and it records the old space with no map.

:func:`embedlab.eval.compat.compatibility_report` measures both against re-indexing.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from embedlab.errors import InvalidInputError, UnsupportedError
from embedlab.models.alignment import Alignment, unit_rows
from embedlab.train.losses import _positive_float, contrastive_texts, info_nce

RIDGE_ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # relative to the mean eigenvalue of the centred new vectors' Gram
HELDOUT = 0.2  # share of the texts kept out of the fit to choose the method
MIN_TEXTS_PER_DIM = 2  # a map needs at least this many texts per dimension of the wider space


def min_texts(new_dim: int, old_dim: int) -> int:
    """The fewest texts :func:`fit_map` accepts for these widths: enough for the fit to be determined after the
    held-out share is set aside."""
    return MIN_TEXTS_PER_DIM * max(new_dim, old_dim)


def _check_count(n: int, new_dim: int, old_dim: int, owner: str) -> None:
    need = min_texts(new_dim, old_dim)
    if n < need:
        raise InvalidInputError(f"{owner}: texts must number at least {need} ({MIN_TEXTS_PER_DIM} per dimension of the "
                                f"wider model, {max(new_dim, old_dim)}) to fit and check a map, got {n}. Pass more "
                                "texts (the collection's documents serve well).")


def _procrustes(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, None]:
    """The (semi-)orthogonal ``W [d_old, d_new]`` minimising ``||x W^T - y||_F``: ``U V^T`` of ``svd(y^T x)``."""
    u, _, vt = np.linalg.svd(y.T.astype(np.float64) @ x.astype(np.float64), full_matrices=False)
    return (u @ vt).astype(np.float32), None


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """``W [d_old, d_new]``, ``b [d_old]`` minimising ``||x W^T + b - y||^2 + lam ||W||^2`` (bias unpenalised), with
    ``lam = alpha * trace(G) / d_new`` for the centred Gram matrix ``G``: ``alpha`` is relative to the data's scale."""
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    mx, my = x64.mean(0), y64.mean(0)
    xc, yc = x64 - mx, y64 - my
    gram = xc.T @ xc
    lam = alpha * max(np.trace(gram) / x.shape[1], 1e-12)
    w = np.linalg.solve(gram + lam * np.eye(x.shape[1]), xc.T @ yc).T  # [d_old, d_new]
    return w.astype(np.float32), (my - w @ mx).astype(np.float32)


def _cosine(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> float:
    mapped = x @ w.T + (0 if b is None else b)
    return float((unit_rows(mapped) * unit_rows(y)).sum(1).mean())


def fit_map(new_vectors: np.ndarray, old_vectors: np.ndarray, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """Fit the map from ``new_vectors [n, d_new]`` to ``old_vectors [n, d_old]`` (the two models' unit vectors of
    the same ``n`` texts, rows paired): ``(W [d_old, d_new], b [d_old] or None, report)``.

    Procrustes and ridge (each alpha of :data:`RIDGE_ALPHAS`) are fitted on a seeded 80% of the rows and scored by
    mean cosine between mapped and old vectors on the other 20%; the best is refitted on every row. ``report`` holds
    ``method``, ``alpha``, ``heldout_cosine`` (per candidate), ``identity_heldout_cosine`` (no map, equal widths
    only) and ``texts``. Fewer rows than :func:`min_texts` is an error naming the minimum."""
    owner = "fit_map"
    x, y = np.asarray(new_vectors, dtype=np.float32), np.asarray(old_vectors, dtype=np.float32)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
        raise InvalidInputError(f"{owner}: new_vectors and old_vectors must be 2-D with one row per text each, got "
                                f"shapes {x.shape} and {y.shape}. Encode the same texts with both models.")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InvalidInputError(f"{owner}: vectors must be finite, got NaN or inf. Check the encoders' outputs.")
    _check_count(len(x), x.shape[1], y.shape[1], owner)
    x, y = unit_rows(x), unit_rows(y)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(round(len(x) * (1 - HELDOUT)))
    train, held = order[:cut], order[cut:]
    scores: dict[str, float] = {"procrustes": _cosine(x[held], y[held], *_procrustes(x[train], y[train]))}
    for alpha in RIDGE_ALPHAS:
        scores[f"ridge(alpha={alpha:g})"] = _cosine(x[held], y[held], *_ridge(x[train], y[train], alpha))
    best = max(scores, key=scores.get)
    if best == "procrustes":
        w, b, alpha = *_procrustes(x, y), None
    else:
        alpha = float(best[len("ridge(alpha="):-1])
        w, b = _ridge(x, y, alpha)
    report = {"method": "procrustes" if alpha is None else "ridge", "alpha": alpha, "heldout_cosine": scores,
              "texts": int(len(x))}
    if x.shape[1] == y.shape[1]:
        report["identity_heldout_cosine"] = float((x[held] * y[held]).sum(1).mean())
    return w, b, report


def align(new_encoder, old_encoder, texts: Sequence[str], *, pairs: tuple[Sequence[str], Sequence[str]] | None = None,
          batch_size: int = 64, cache=None, seed: int = 0):
    """Give ``new_encoder`` a map into ``old_encoder``'s space fitted on ``texts`` (:func:`fit_map`) and return it.

    ``pairs = (queries, documents)`` (the i-th query's relevant document, e.g. a training split's qrels) adds rows
    ``new(query) -> old(document)``: the map then also learns where the old index keeps the documents a new query
    should find, not only how the two models place the same text. Documents already among ``texts`` are not encoded
    again.

    The :class:`~embedlab.models.alignment.Alignment` is set on ``new_encoder`` (``new_encoder.save(path)`` keeps it,
    ``alignment.write(folder)`` adds it to an existing model folder); a collection built by the old model then takes
    ``new_encoder``'s queries and maps them. ``cache``: a folder for the two encodings
    (:func:`~embedlab.models.cache.cached_encode`; None encodes without caching)."""
    texts = list(texts)
    queries, documents = ([], []) if pairs is None else (list(pairs[0]), list(pairs[1]))
    if len(queries) != len(documents):
        raise InvalidInputError(f"align: pairs must be (queries, documents) of one length, got {len(queries)} queries "
                                f"and {len(documents)} documents.")
    _check_count(len(texts) + len(queries), new_encoder.dim, old_encoder.dim, "align")  # before encoding anything

    def vectors(encoder, items: list[str]) -> np.ndarray:
        if not items:
            return np.zeros((0, encoder.dim), np.float32)
        if cache is None:
            return encoder.encode(items, batch_size=batch_size)
        from embedlab.models.cache import cached_encode

        return cached_encode(encoder, items, root=cache, batch_size=batch_size)

    new_x, old_y = vectors(new_encoder, texts), vectors(old_encoder, texts)
    if queries:
        row = {t: i for i, t in enumerate(texts)}
        missing = list(dict.fromkeys(d for d in documents if d not in row))
        extra = dict(zip(missing, vectors(old_encoder, missing)))
        old_docs = np.stack([old_y[row[d]] if d in row else extra[d] for d in documents])
        new_x, old_y = np.concatenate([new_x, vectors(new_encoder, queries)]), np.concatenate([old_y, old_docs])
    w, b, report = fit_map(new_x, old_y, seed=seed)
    report["pairs"] = len(queries)
    new_encoder.alignment = Alignment(space=old_encoder.space, model=old_encoder.source or repr(old_encoder),
                                      method=report["method"], weight=w, bias=b, fit=report)
    return new_encoder


class BackwardCompatible(torch.nn.Module):
    """A contrastive loss plus BCT's influence term (see the module docstring): ``loss(new) + weight * L_compat``.

    ``L_compat = InfoNCE(new anchors [b, d], old candidates [b + b*k, d])``: the anchors are the new model's (the
    wrapped loss's own pass, shared), the candidates the old model's unit vectors of the positives and hard
    negatives, with the wrapped loss's temperature. ``old_encoder`` runs without gradients; its vectors are kept per
    text for the run (documents recur across epochs). The wrapped loss must expose ``groups`` and
    ``from_embeddings`` (:class:`~embedlab.train.losses.InfoNCE` does)."""

    def __init__(self, loss: torch.nn.Module, old_encoder, weight: float = 1.0) -> None:
        super().__init__()
        owner = type(self).__name__
        if not (hasattr(loss, "groups") and hasattr(loss, "from_embeddings")) or type(loss).__name__ == "CachedInfoNCE":
            raise UnsupportedError(f"{owner}: loss must be an InfoNCE-style contrastive loss with groups() and "
                                   f"from_embeddings(), got {type(loss).__name__}. Use InfoNCE() with old_encoder=.")
        self.loss = loss
        self.weight = _positive_float(weight, owner, "weight")
        self.temperature = float(loss.temperature)
        self.old_encoder = old_encoder
        self._old: dict[str, np.ndarray] = {}

    def _old_vectors(self, texts: list[str], device) -> torch.Tensor:
        todo = list(dict.fromkeys(t for t in texts if t not in self._old))
        if todo:
            for t, v in zip(todo, self.old_encoder.encode(todo, show_progress=False)):
                self._old[t] = v
        return torch.from_numpy(np.stack([self._old[t] for t in texts])).to(device)

    def forward(self, encoder, batch: Mapping) -> torch.Tensor:
        from embedlab.train.losses import embed

        groups, _ = self.loss.groups(batch)
        parts = [embed(encoder, texts, prompt) for texts, prompt in groups]
        _, positives, negatives, _ = contrastive_texts(batch, f"{type(self).__name__}.forward")
        old = self._old_vectors(positives + negatives, parts[0].device)
        if old.shape[1] != parts[0].shape[1]:
            raise InvalidInputError(f"{type(self).__name__}: the old model's width must be the new one's, got "
                                    f"{old.shape[1]} against {parts[0].shape[1]}. Align them with align() instead.")
        compat = info_nce(parts[0], old.to(parts[0].dtype), temperature=self.temperature)
        return self.loss.from_embeddings(parts) + self.weight * compat

    def extra_repr(self) -> str:
        return f"weight={self.weight}"

