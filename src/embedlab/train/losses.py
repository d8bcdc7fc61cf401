"""Training losses: ``torch.nn.Module``\\ s called as ``loss(encoder, batch) -> scalar``.

Each loss encodes the columns of a batch itself (``encoder.tokenize(texts, prompt=...)`` then
``encoder.forward(features)``, the encoder's differentiable torch path), with the batch's per-column prompts
(:func:`embedlab.train.data.prompt_for`), so a loss such as :class:`CachedInfoNCE` controls its own passes.
The arithmetic on embeddings is in plain functions (:func:`info_nce`, :func:`gist_mask`, :func:`cosent`),
tested against hand computation. Similarities are cosines throughout.

Shapes: ``b`` rows per batch, ``k`` hard negatives per row, ``d`` the embedding width.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from embedlab.errors import InvalidInputError
from embedlab.params import check_choice, check_int
from embedlab.train.data import prompt_for

MARGIN_STRATEGIES = ("absolute", "relative")
_TIE = 1e-6  # GISTEmbed: a candidate within this of the positive's guide similarity counts as a duplicate


# ---------------------------------------------------------------------------------------------- shared pieces
def _positive_float(value, owner: str, name: str, hint: str = "") -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value > 0
    if not ok:
        raise InvalidInputError(f"{owner}: {name} must be a positive finite number, got {value!r}.{hint}")
    return float(value)


def _columns(batch: Mapping, names: Sequence[str], owner: str) -> None:
    missing = [n for n in names if n not in batch]
    if missing or not isinstance(batch, Mapping):
        got = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
        raise InvalidInputError(f"{owner}: batch must have columns {list(names)}, got {got}. Use a data set of the "
                                "kind this loss trains on (contrastive: anchor/positive; scored: sentence1/sentence2/score).")
    sizes = {n: len(batch[n]) for n in names}
    if len(set(sizes.values())) != 1 or not next(iter(sizes.values())):
        raise InvalidInputError(f"{owner}: batch columns must have one non-zero length, got {sizes}.")


def contrastive_texts(batch: Mapping, owner: str) -> tuple[list[str], list[str], list[str], int]:
    """``(anchors [b], positives [b], negatives [b * k] row-major, k)`` of a contrastive batch."""
    _columns(batch, ("anchor", "positive"), owner)
    anchors, positives = list(batch["anchor"]), list(batch["positive"])
    negatives = batch.get("negative") or []
    if negatives and len(negatives) != len(anchors):
        raise InvalidInputError(f"{owner}: batch column 'negative' must have one list per row, got "
                                f"{len(negatives)} lists for {len(anchors)} rows.")
    counts = {len(row) for row in negatives}
    if len(counts) > 1:
        raise InvalidInputError(f"{owner}: batch column 'negative' must have the same count per row, got "
                                f"counts {sorted(counts)}.")
    k = counts.pop() if counts else 0
    return anchors, positives, [t for row in negatives for t in row], k


def embed(encoder, texts: list[str], prompt: str | None) -> torch.Tensor:
    """``encoder.forward(encoder.tokenize(texts, prompt=prompt))``: pooled embeddings ``[n, d]`` with gradients."""
    return encoder.forward(encoder.tokenize(texts, prompt=prompt))


def _candidate_groups(batch: Mapping, positives: list[str], negatives: list[str]) -> list[tuple[list[str], str | None]]:
    """The candidate texts as ``(texts, prompt)`` groups: one group when negatives share the positives' prompt."""
    p_prompt, n_prompt = prompt_for(batch, "positive"), prompt_for(batch, "negative")
    if not negatives:
        return [(positives, p_prompt)]
    if n_prompt == p_prompt:
        return [(positives + negatives, p_prompt)]
    return [(positives, p_prompt), (negatives, n_prompt)]


def info_nce(anchors: torch.Tensor, candidates: torch.Tensor, *, temperature: float = 0.05,
             symmetric: bool = False) -> torch.Tensor:
    """InfoNCE over cosine similarities (van den Oord et al. 2018, "Representation Learning with Contrastive
    Predictive Coding", eq. 4; Henderson et al. 2017's multiple-negatives ranking loss).

    ``anchors [b, d]``; ``candidates [b + m, d]`` whose first ``b`` rows are the anchors' positives (row ``i``
    of anchor ``i``) and the rest any further negatives (e.g. ``b * k`` hard negatives). With
    ``s_ij = cos(anchor_i, candidate_j) / temperature`` the loss is ``mean_i -log softmax_j(s_i)[i]``.
    ``symmetric`` averages it with the positives-to-anchors term ``mean_i -log softmax_j(cos(p_i, a_j)/t)[i]``
    (Radford et al. 2021's two-way loss). Returns a scalar of the inputs' dtype.
    """
    b = anchors.shape[0]
    a = F.normalize(anchors, p=2, dim=1)
    c = F.normalize(candidates, p=2, dim=1)
    labels = torch.arange(b, device=anchors.device)
    loss = F.cross_entropy(a @ c.T / temperature, labels)
    if symmetric:
        loss = (loss + F.cross_entropy(c[:b] @ a.T / temperature, labels)) / 2
    return loss


# ---------------------------------------------------------------------------------------------- InfoNCE
class InfoNCE(torch.nn.Module):
    """Multiple-negatives ranking / InfoNCE with in-batch and hard negatives (van den Oord et al. 2018, as
    trained by NV-Embed, Lee et al. 2024, and KaLM-Embedding, Hu et al. 2025).

    Batch: contrastive columns ``anchor [b]``, ``positive [b]``, optional ``negative [b][k]``. Each anchor is
    scored against all ``b`` positives and all ``b * k`` hard negatives (cosine / ``temperature``) and trained
    to rank its own positive first (:func:`info_nce`). ``temperature=0.05`` is sentence-transformers'
    ``MultipleNegativesRankingLoss(scale=20)``. ``symmetric`` adds the positives-to-anchors term.
    """

    def __init__(self, temperature: float = 0.05, *, symmetric: bool = False) -> None:
        super().__init__()
        self.temperature = _positive_float(temperature, type(self).__name__, "temperature",
                                           " sentence-transformers' scale 20 is temperature 0.05.")
        if not isinstance(symmetric, bool):
            raise InvalidInputError(f"{type(self).__name__}: symmetric must be a bool, got {symmetric!r}.")
        self.symmetric = symmetric

    def groups(self, batch: Mapping) -> tuple[list[tuple[list[str], str | None]], int]:
        """The texts to encode as ``(texts, prompt)`` groups (anchors first) and how many groups are anchors."""
        anchors, positives, negatives, _ = contrastive_texts(batch, f"{type(self).__name__}.forward")
        return [(anchors, prompt_for(batch, "anchor"))] + _candidate_groups(batch, positives, negatives), 1

    def from_embeddings(self, parts: list[torch.Tensor], batch: Mapping | None = None) -> torch.Tensor:
        """The loss from the embeddings of :meth:`groups` (anchors ``[b, d]``, then candidate groups)."""
        return info_nce(parts[0], torch.cat(parts[1:]), temperature=self.temperature, symmetric=self.symmetric)

    def forward(self, encoder, batch: Mapping) -> torch.Tensor:
        groups, _ = self.groups(batch)
        return self.from_embeddings([embed(encoder, texts, prompt) for texts, prompt in groups])

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, symmetric={self.symmetric}"


# ---------------------------------------------------------------------------------------------- GradCache
class _RngState:
    """The torch RNG state(s) before a chunk's first pass, restored (in a fork) for its re-run, so dropout
    draws the same masks twice (Gao et al. 2021's ``RandContext``)."""

    def __init__(self, device: torch.device) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = device if device.type == "cuda" else None
        self.cuda_state = torch.cuda.get_rng_state(device) if self.cuda is not None else None

    @contextlib.contextmanager
    def restored(self):
        with torch.random.fork_rng(devices=[self.cuda] if self.cuda is not None else []):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state(self.cuda_state, self.cuda)
            yield


def trainable_parameters(encoder) -> list[torch.nn.Parameter]:
    """The parameters ``encoder.forward`` trains: the backbone's and the Dense head's, those with ``requires_grad``."""
    modules = [encoder.model]
    head = getattr(encoder.runtime, "head", None)
    if head is not None:
        modules.append(head)
    return [p for m in modules for p in m.parameters() if p.requires_grad]


class _GradCache(torch.autograd.Function):
    """Forward: every chunk embedded without a graph, the loss and its gradient w.r.t. the embeddings.
    Backward: each chunk re-embedded with a graph (same RNG state) and its cached embedding gradient
    (times the incoming gradient) pulled back to the parameters, one chunk in memory at a time."""

    @staticmethod
    def forward(ctx, encoder, chunks: list, n_parts: list[int], loss_of: Callable, *params):
        states, embeddings = [], []
        for features in chunks:  # Function.forward runs without grad
            states.append(_RngState(encoder.device))
            embeddings.append(encoder.forward(features))
        with torch.enable_grad():
            leaves = [e.detach().requires_grad_() for e in embeddings]
            parts, start = [], 0
            for n in n_parts:  # chunks back into the loss's groups
                parts.append(torch.cat(leaves[start:start + n]))
                start += n
            loss = loss_of(parts)
            grads = torch.autograd.grad(loss, leaves)
        ctx.encoder, ctx.chunks, ctx.states, ctx.grads = encoder, chunks, states, grads
        ctx.save_for_backward(*params)
        return loss.detach()

    @staticmethod
    def backward(ctx, grad_output):
        params = ctx.saved_tensors
        total: list[torch.Tensor | None] = [None] * len(params)
        for features, state, grad in zip(ctx.chunks, ctx.states, ctx.grads):
            with torch.enable_grad(), state.restored():
                embedding = ctx.encoder.forward(features)
                pieces = torch.autograd.grad(embedding, params, grad_outputs=grad * grad_output, allow_unused=True)
            for i, piece in enumerate(pieces):
                if piece is not None:
                    total[i] = piece if total[i] is None else total[i] + piece
        ctx.chunks = ctx.grads = ctx.states = None
        return (None, None, None, None, *total)


class CachedInfoNCE(InfoNCE):
    """:class:`InfoNCE` with GradCache (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under
    Memory Limited Setup", RepL4NLP 2021): the same loss and gradients, with memory bounded by ``mini_batch``
    texts per pass instead of the batch, so the effective batch (the in-batch negatives) can be large.

    The returned scalar comes from a custom ``torch.autograd.Function``: its forward embeds every chunk of
    ``mini_batch`` texts without a graph and computes the loss and its gradient w.r.t. those embeddings
    ``[b * (2 + k), d]`` (cached); its backward — run by the trainer's ``loss.backward()`` (or
    ``torch.autograd.grad``) — re-embeds each chunk with a graph, restoring the RNG state of its first pass
    so dropout matches, and back-propagates the cached gradients into the encoder's parameters
    (:func:`trainable_parameters`). Each chunk is encoded twice (about 1.3x the uncached compute).
    """

    def __init__(self, temperature: float = 0.05, *, symmetric: bool = False, mini_batch: int = 32) -> None:
        super().__init__(temperature, symmetric=symmetric)
        self.mini_batch = check_int(mini_batch, "CachedInfoNCE", "mini_batch",
                                    hint="It bounds the texts per forward pass.")

    def forward(self, encoder, batch: Mapping) -> torch.Tensor:
        groups, _ = self.groups(batch)
        chunks, n_parts = [], []
        for texts, prompt in groups:
            pieces = [texts[i:i + self.mini_batch] for i in range(0, len(texts), self.mini_batch)]
            chunks.extend(encoder.tokenize(piece, prompt=prompt) for piece in pieces)
            n_parts.append(len(pieces))
        return _GradCache.apply(encoder, chunks, n_parts, self.from_embeddings, *trainable_parameters(encoder))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mini_batch={self.mini_batch}"


# ---------------------------------------------------------------------------------------------- GISTEmbed
def gist_mask(guide_anchor: torch.Tensor, guide_positive: torch.Tensor, guide_negative: torch.Tensor | None = None,
              *, margin: float = 0.0, margin_strategy: str = "absolute", contrast_anchors: bool = True,
              contrast_positives: bool = True) -> torch.Tensor:
    """GISTEmbed's false-negative mask (Solatorio 2024, arXiv:2402.16829): ``True`` where a candidate is dropped.

    Inputs are the guide's embeddings: ``guide_anchor [b, g]``, ``guide_positive [b, g]``, optional
    ``guide_negative [b * k, g]`` (any width ``g``; normalised here). Columns of the mask ``[b, m]`` follow
    :class:`GISTEmbed`'s score matrix: the ``b`` in-batch positives, then (``contrast_anchors``) the ``b``
    anchors, then (``contrast_positives``) the ``b`` positives compared with positive ``i``, then the ``b * k``
    hard negatives. With ``t_i = cos_guide(anchor_i, positive_i)``, a candidate of row ``i`` is dropped when its
    guide similarity (to anchor ``i``; to positive ``i`` in the positives block) exceeds ``t_i - margin``
    (``"absolute"``) or ``t_i - |t_i| * margin`` (``"relative"``, i.e. ``t_i (1 - margin)`` for ``t_i > 0``);
    a tie within 1e-6 (a duplicate text) counts as exceeding. Row ``i``'s own positive is never dropped;
    the self-pairs of the anchor and positive blocks always are.
    """
    strategy = check_choice(margin_strategy, MARGIN_STRATEGIES, "gist_mask", "margin_strategy")
    ga, gp = F.normalize(guide_anchor, dim=1), F.normalize(guide_positive, dim=1)
    ap = ga @ gp.T
    t = ap.diagonal().unsqueeze(1)
    limit = (t - margin if strategy == "absolute" else t - t.abs() * margin) - _TIE
    eye = torch.eye(ap.shape[0], dtype=torch.bool, device=ap.device)
    blocks = [(ap > limit) & ~eye]
    if contrast_anchors:
        blocks.append((ga @ ga.T > limit) | eye)
    if contrast_positives:
        blocks.append((gp @ gp.T > limit) | eye)
    if guide_negative is not None and guide_negative.shape[0]:
        blocks.append(ga @ F.normalize(guide_negative, dim=1).T > limit)
    return torch.cat(blocks, dim=1)


class GISTEmbed(torch.nn.Module):
    """Guided in-sample selection of training negatives (GISTEmbed; Solatorio 2024, arXiv:2402.16829).

    :class:`InfoNCE` whose candidates a ``guide`` encoder filters: a candidate (an in-batch positive, another
    anchor, another positive, or a hard negative) that the guide finds more similar to the anchor than the
    anchor's own positive (less ``margin``; see :func:`gist_mask`) is probably a false negative and is dropped
    from the softmax. Scores ``[b, b (1 + contrast_anchors + contrast_positives) + b k]`` are model cosines /
    ``temperature``; the target of row ``i`` is column ``i``. The guide encodes the raw texts with the same
    prompts, through its own :meth:`~embedlab.models.Encoder.encode` (its own tokenizer, which may differ, and
    any backend or width), without gradients.
    """

    def __init__(self, guide, temperature: float = 0.01, *, margin: float = 0.0, margin_strategy: str = "absolute",
                 contrast_anchors: bool = True, contrast_positives: bool = True) -> None:
        super().__init__()
        from embedlab.models import Encoder

        if not isinstance(guide, Encoder):
            raise InvalidInputError(f"GISTEmbed: guide must be an Encoder, got {type(guide).__name__}. "
                                    "Load one with Encoder.load(...).")
        self.guide = guide
        self.temperature = _positive_float(temperature, "GISTEmbed", "temperature")
        ok = not isinstance(margin, bool) and isinstance(margin, (int, float)) and math.isfinite(margin) and margin >= 0
        if not ok:
            raise InvalidInputError(f"GISTEmbed: margin must be a finite number >= 0, got {margin!r}.")
        self.margin = float(margin)
        self.margin_strategy = check_choice(margin_strategy, MARGIN_STRATEGIES, "GISTEmbed", "margin_strategy")
        for name, flag in (("contrast_anchors", contrast_anchors), ("contrast_positives", contrast_positives)):
            if not isinstance(flag, bool):
                raise InvalidInputError(f"GISTEmbed: {name} must be a bool, got {flag!r}.")
        self.contrast_anchors, self.contrast_positives = contrast_anchors, contrast_positives

    def _guide(self, texts: list[str], prompt: str | None, device) -> torch.Tensor:
        vectors = self.guide.encode(texts, prompt=prompt, batch_size=len(texts), show_progress=False)
        return torch.from_numpy(vectors).to(device)

    def forward(self, encoder, batch: Mapping) -> torch.Tensor:
        if encoder is self.guide:
            raise InvalidInputError("GISTEmbed.forward: guide must be another encoder than the one trained, got the "
                                    "same object (its guidance would drift with training). Load a frozen copy: "
                                    "Encoder.load(encoder.source).")
        anchors, positives, negatives, _ = contrastive_texts(batch, "GISTEmbed.forward")
        a_prompt, p_prompt, n_prompt = (prompt_for(batch, c) for c in ("anchor", "positive", "negative"))
        a, p = embed(encoder, anchors, a_prompt), embed(encoder, positives, p_prompt)
        n = embed(encoder, negatives, n_prompt) if negatives else None
        with torch.no_grad():
            ga, gp = self._guide(anchors, a_prompt, a.device), self._guide(positives, p_prompt, a.device)
            gn = self._guide(negatives, n_prompt, a.device) if negatives else None
            mask = gist_mask(ga, gp, gn, margin=self.margin, margin_strategy=self.margin_strategy,
                             contrast_anchors=self.contrast_anchors, contrast_positives=self.contrast_positives)
        a, p = F.normalize(a, dim=1), F.normalize(p, dim=1)
        blocks = [a @ p.T]
        if self.contrast_anchors:
            blocks.append(a @ a.T)
        if self.contrast_positives:
            blocks.append(p @ p.T)
        if n is not None:
            blocks.append(a @ F.normalize(n, dim=1).T)
        scores = (torch.cat(blocks, dim=1) / self.temperature).masked_fill(mask, -torch.inf)
        return F.cross_entropy(scores, torch.arange(len(anchors), device=scores.device))

    def extra_repr(self) -> str:
        return (f"temperature={self.temperature}, margin={self.margin}, margin_strategy={self.margin_strategy!r}, "
                f"contrast_anchors={self.contrast_anchors}, contrast_positives={self.contrast_positives}")


# ---------------------------------------------------------------------------------------------- CoSENT
def cosent(similarities: torch.Tensor, scores: torch.Tensor, *, scale: float = 20.0) -> torch.Tensor:
    """CoSENT (Su 2022, "CoSENT: a more efficient sentence vector scheme than Sentence-BERT", kexue.fm/archives/8847).

    ``similarities [b]`` (cosines of the pairs), ``scores [b]`` (gold labels, any scale; only their order
    matters): ``log(1 + sum_{(i, j): score_i > score_j} exp(scale * (cos_j - cos_i)))``, a scalar; 0 terms
    (all scores equal) give ``log 1 = 0``.
    """
    diff = scale * (similarities[None, :] - similarities[:, None])  # [i, j] = scale * (cos_j - cos_i)
    wrong = scores[:, None] > scores[None, :]
    terms = torch.cat([diff.new_zeros(1), diff[wrong]])
    return torch.logsumexp(terms, dim=0)


class CoSENT(torch.nn.Module):
    """CoSENT for scored pairs (Su 2022; sentence-transformers' ``CoSENTLoss``): every pair with a higher
    gold score should have a higher cosine than every pair with a lower one (:func:`cosent`).

    Batch: scored columns ``sentence1 [b]``, ``sentence2 [b]``, ``score [b]`` (floats).
    """

    def __init__(self, scale: float = 20.0) -> None:
        super().__init__()
        self.scale = _positive_float(scale, "CoSENT", "scale")

    def groups(self, batch: Mapping) -> tuple[list[tuple[list[str], str | None]], int]:
        """The texts to encode as ``(texts, prompt)`` groups: ``sentence1``, then ``sentence2``."""
        _columns(batch, ("sentence1", "sentence2", "score"), "CoSENT.forward")
        return [(list(batch[c]), prompt_for(batch, c)) for c in ("sentence1", "sentence2")], 1

    def forward(self, encoder, batch: Mapping) -> torch.Tensor:
        groups, _ = self.groups(batch)
        return self.from_embeddings([embed(encoder, texts, prompt) for texts, prompt in groups], batch)

    def from_embeddings(self, parts: list[torch.Tensor], batch: Mapping | None = None) -> torch.Tensor:
        """The loss from the embeddings ``[b, d]`` of :meth:`groups` and the batch's ``score`` column."""
        if batch is None:
            raise InvalidInputError("CoSENT.from_embeddings: batch must be given (its 'score' column), got None.")
        u, v = parts
        similarities = (F.normalize(u, dim=1) * F.normalize(v, dim=1)).sum(dim=1)
        scores = torch.as_tensor([float(s) for s in batch["score"]], dtype=similarities.dtype,
                                 device=similarities.device)
        return cosent(similarities, scores, scale=self.scale)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


# ---------------------------------------------------------------------------------------------- late interaction
def maxsim_scores(queries: torch.Tensor, query_mask: torch.Tensor, documents: torch.Tensor,
                  document_mask: torch.Tensor) -> torch.Tensor:
    """Late-interaction scores ``[b, c]`` (ColBERT's MaxSim; Khattab & Zaharia 2020), averaged over query tokens.

    ``queries [b, tq, d]`` and ``documents [c, td, d]`` are unit token vectors; the boolean masks ``[b, tq]`` and
    ``[c, td]`` mark the tokens that count. Score ``(i, j)`` = mean over the query's tokens of the best inner
    product with any of document ``j``'s tokens. ColBERT sums instead of averaging; for one query the two differ
    by the constant factor of its token count, so they rank documents identically (and the retrieval side,
    :func:`embedlab.index.multivector.maxsim.maxsim_search`, sums). The mean keeps the scale of a cosine, so one
    ``temperature`` suits single- and multi-vector training.
    """
    sims = torch.einsum("bqd,ctd->bcqt", queries, documents)
    sims = sims.masked_fill(~document_mask[None, :, None, :], -torch.inf)
    best = sims.amax(dim=-1).masked_fill(~query_mask[:, None, :], 0.0)  # [b, c, tq]
    return best.sum(dim=-1) / query_mask.sum(dim=-1).clamp(min=1)[:, None]


class MaxSimContrastive(torch.nn.Module):
    """Contrastive late-interaction training (ColBERT, Khattab & Zaharia 2020; as PyLate's ``Contrastive`` loss).

    Token states go through the encoder's trainable projection (``encoder.add_token_projection(dim)``, e.g.
    384 -> 128, created by this constructor), are unit-normalised, and score with :func:`maxsim_scores` over the
    tokens :meth:`~embedlab.models.Encoder.encode_tokens` keeps (padding and special tokens dropped; a prompt's
    tokens kept). InfoNCE over the MaxSim scores: row ``i``'s anchor against every positive in the batch plus
    every hard negative ``[b, b + b k]``, divided by ``temperature``, target column ``i``. The projection and the
    backbone both train, and the saved model's ``encode_tokens`` yields the trained token vectors.
    """

    def __init__(self, encoder, dim: int = 128, temperature: float = 0.05) -> None:
        super().__init__()
        if not hasattr(encoder, "add_token_projection"):
            raise InvalidInputError(f"MaxSimContrastive: encoder must be an Encoder, got {type(encoder).__name__}. "
                                    "Pass the encoder you train: MaxSimContrastive(encoder, dim=128).")
        encoder.add_token_projection(dim)
        self.dim = int(dim)
        self.temperature = _positive_float(temperature, "MaxSimContrastive", "temperature")

    def tokens(self, encoder, texts: list[str], prompt: str | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(unit token vectors [n, t, dim], kept-token mask [n, t])`` with gradients."""
        if encoder.token_projection is None or encoder.token_projection.out_features != self.dim:
            raise InvalidInputError(f"MaxSimContrastive.forward: encoder must have the {self.dim}-wide token "
                                    "projection this loss was built with, got "
                                    f"{getattr(encoder.token_projection, 'out_features', None)}. Build the loss "
                                    "with the encoder you train.")
        features = encoder.tokenize(texts, prompt=prompt, special_tokens_mask=True)
        mask = features["attention_mask"].bool() & ~features["special_tokens_mask"].bool()
        return F.normalize(encoder.forward_tokens(features), dim=-1), mask

    def forward(self, encoder, batch: Mapping) -> torch.Tensor:
        anchors, positives, negatives, _ = contrastive_texts(batch, "MaxSimContrastive.forward")
        q, q_mask = self.tokens(encoder, anchors, prompt_for(batch, "anchor"))
        scores = []
        for texts, prompt in _candidate_groups(batch, positives, negatives):
            d, d_mask = self.tokens(encoder, texts, prompt)
            scores.append(maxsim_scores(q, q_mask, d, d_mask))
        logits = torch.cat(scores, dim=1) / self.temperature
        return F.cross_entropy(logits, torch.arange(len(anchors), device=logits.device))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, temperature={self.temperature}"


# ---------------------------------------------------------------------------------------------- elastic: Matryoshka, 2-D
def _elastic_inner(loss, owner: str) -> torch.nn.Module:
    """The wrapped loss of an elastic loss: one that splits into ``groups(batch)`` and ``from_embeddings(parts, batch)``
    (InfoNCE, CoSENT), so that one forward pass serves every prefix and layer."""
    ok = isinstance(loss, torch.nn.Module) and hasattr(loss, "groups") and hasattr(loss, "from_embeddings")
    if not ok or isinstance(loss, (CachedInfoNCE, Matryoshka)):
        raise InvalidInputError(f"{owner}: loss must be InfoNCE or CoSENT (a loss with groups() and "
                                f"from_embeddings()), got {type(loss).__name__}. Wrap InfoNCE(), e.g. {owner}(InfoNCE(), ...).")
    return loss


def _check_sizes(values, owner: str, name: str, example: str) -> list[int]:
    ok = (isinstance(values, (list, tuple)) and values
          and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values))
    if not ok:
        raise InvalidInputError(f"{owner}: {name} must be a non-empty list of positive ints, got {values!r}. "
                                f"Pass e.g. {example}.")
    if len(set(values)) != len(values):
        raise InvalidInputError(f"{owner}: {name} must not repeat a value, got {list(values)}.")
    return list(values)


def _check_weights(weights, n: int, owner: str) -> list[float]:
    if weights is None:
        return [1.0] * n
    if not isinstance(weights, (list, tuple)) or len(weights) != n:
        raise InvalidInputError(f"{owner}: weights must be a list of {n} numbers (one per size), got {weights!r}.")
    return [_positive_float(w, owner, "each weight") for w in weights]


def _check_width(encoder, dims, owner: str) -> None:
    if max(dims) > encoder.dim:
        raise InvalidInputError(f"{owner}: every dim must be at most the model's width {encoder.dim}, got "
                                f"{max(dims)}. Drop the sizes above {encoder.dim}.")


def _similarity_log_probs(parts: list[torch.Tensor], temperature: float) -> torch.Tensor:
    """Row-wise log-softmax ``[b, m]`` of the cosines of the first part (anchors) to the rest (candidates)."""
    a = F.normalize(parts[0], dim=1)
    c = F.normalize(torch.cat(parts[1:]), dim=1)
    return F.log_softmax(a @ c.T / temperature, dim=1)


def similarity_kl(small: list[torch.Tensor], full: list[torch.Tensor], *, temperature: float = 0.3) -> torch.Tensor:
    """``KL(p_full || p_small)`` averaged over anchors, where ``p`` is the softmax over candidates of anchor-candidate
    cosines / ``temperature`` (:func:`_similarity_log_probs`); ``full`` is detached, so only the smaller model moves
    toward the full one (the alignment term of Starbucks and 2DMSE). ``small`` and ``full``: the same groups
    (anchors first), any widths."""
    target = _similarity_log_probs([p.detach() for p in full], temperature)
    return F.kl_div(_similarity_log_probs(small, temperature), target, log_target=True, reduction="batchmean")


class Matryoshka(torch.nn.Module):
    """Matryoshka representation learning (Kusupati et al. 2022, "Matryoshka Representation Learning", NeurIPS):
    ``sum_d w_d * loss(embeddings[:, :d])`` over the prefix sizes ``dims``, from one forward pass.

    ``dims`` in any order (sorted here, with their ``weights``; default 1 each), each at most the model's width
    (checked on the first batch); the wrapped ``loss`` is :class:`InfoNCE` or :class:`CoSENT`. Prefixes are
    re-normalised by the wrapped loss (it works on cosines).
    """

    def __init__(self, loss: torch.nn.Module, dims, weights=None) -> None:
        super().__init__()
        self.loss = _elastic_inner(loss, "Matryoshka")
        dims = _check_sizes(dims, "Matryoshka", "dims", "[64, 128, 256, 384]")
        weights = _check_weights(weights, len(dims), "Matryoshka")
        order = sorted(range(len(dims)), key=dims.__getitem__)
        self.dims, self.weights = [dims[i] for i in order], [weights[i] for i in order]
        self.spec = ",".join(f"{d}:{w:g}" for d, w in zip(self.dims, self.weights))  # recorded in checkpoints

    def prefix_loss(self, parts: list[torch.Tensor], batch: Mapping) -> torch.Tensor:
        return sum(w * self.loss.from_embeddings([p[:, :d] for p in parts], batch)
                   for d, w in zip(self.dims, self.weights))

    def forward(self, encoder, batch: Mapping) -> torch.Tensor:
        _check_width(encoder, self.dims, "Matryoshka")
        groups, _ = self.loss.groups(batch)
        return self.prefix_loss([embed(encoder, texts, prompt) for texts, prompt in groups], batch)

    def extra_repr(self) -> str:
        return f"dims={self.dims}, weights={self.weights}"


def check_pairs(pairs, owner: str) -> list[tuple[int, int]]:
    """``pairs`` of ``(layer, dim)`` as a list of int tuples, sorted from small to full with no repeats; a clear
    error otherwise. Model limits are checked against the encoder on the first batch (:func:`_check_pairs_fit`)."""
    example = "[(2, 64), (4, 192), (6, 384)]"
    ok = isinstance(pairs, (list, tuple)) and pairs and all(
        isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                                                             for v in p) for p in pairs)
    if not ok:
        raise InvalidInputError(f"{owner}: pairs must be a non-empty list of (layer, dim) pairs of positive ints, got "
                                f"{pairs!r}. Pass e.g. {example}.")
    pairs = [(int(a), int(b)) for a, b in pairs]
    if len(set(pairs)) != len(pairs):
        dup = sorted({p for p in pairs if pairs.count(p) > 1})
        raise InvalidInputError(f"{owner}: pairs must not repeat, got {dup} more than once.")
    if pairs != sorted(pairs) or any(b[1] < a[1] for a, b in zip(pairs, pairs[1:])):
        raise InvalidInputError(f"{owner}: pairs must run from small to full (layers and dims never decreasing), got "
                                f"{pairs}. Pass them sorted, e.g. {example}.")
    return pairs


def _check_pairs_fit(encoder, pairs, owner: str) -> None:
    layer, dim = pairs[-1]
    if layer > encoder.num_layers or dim > encoder.dim:
        raise InvalidInputError(f"{owner}: pairs must stay within the model ({encoder.num_layers} layers, dim "
                                f"{encoder.dim}), got {(layer, dim)}. Drop the pairs beyond it.")
    if (layer, dim) != (encoder.num_layers, encoder.dim):
        raise InvalidInputError(f"{owner}: the last pair must be the full model {(encoder.num_layers, encoder.dim)} "
                                f"(the alignment target), got {(layer, dim)}. Append it.")


def _layer_parts(encoder, groups, layers) -> dict[int, list[torch.Tensor]]:
    """``{layer: [embeddings [n_g, d] of each group]}`` from one pass per group through the deepest layer."""
    per_group = [encoder.forward_layers(encoder.tokenize(texts, prompt=prompt), layers) for texts, prompt in groups]
    return {layer: [g[layer] for g in per_group] for layer in layers}


class Starbucks(torch.nn.Module):
    """Starbucks representation learning (Zhuang et al. 2024, "Starbucks: Improved Training for 2D Matryoshka
    Embeddings", arXiv:2410.13230): every step, the wrapped loss at each ``(layer, dim)`` of ``pairs`` plus
    ``kl_weight`` times :func:`similarity_kl` of each smaller pair toward the full model.

    ``pairs`` run from small to full (:func:`check_pairs`) and end with the full model ``(num_layers, dim)``; all
    layers come from one forward pass per text group (:meth:`~embedlab.models.Encoder.forward_layers`), so a step
    costs about one plain step plus the small losses. ``weights`` (one per pair, default 1). The paper's
    masked-autoencoder pre-training stage (Starbucks-MAE) is not implemented: this is its fine-tuning stage alone.
    """

    def __init__(self, loss: torch.nn.Module, pairs, *, weights=None, kl_weight: float = 1.0,
                 kl_temperature: float = 0.3) -> None:
        super().__init__()
        self.loss = _elastic_inner(loss, "Starbucks")
        self.pairs = check_pairs(pairs, "Starbucks")
        self.weights = _check_weights(weights, len(self.pairs), "Starbucks")
        self.kl_weight = float(kl_weight) if kl_weight == 0 else _positive_float(kl_weight, "Starbucks", "kl_weight")
        self.kl_temperature = _positive_float(kl_temperature, "Starbucks", "kl_temperature")
        self.spec = ",".join(f"{layer}x{dim}:{w:g}" for (layer, dim), w in zip(self.pairs, self.weights))

    def forward(self, encoder, batch: Mapping) -> torch.Tensor:
        _check_pairs_fit(encoder, self.pairs, "Starbucks")
        groups, _ = self.loss.groups(batch)
        parts = _layer_parts(encoder, groups, sorted({layer for layer, _ in self.pairs}))
        full = parts[self.pairs[-1][0]]
        total = 0.0
        for (layer, dim), w in zip(self.pairs, self.weights):
            small = [p[:, :dim] for p in parts[layer]]
            total = total + w * self.loss.from_embeddings(small, batch)
            if self.kl_weight and (layer, dim) != self.pairs[-1]:
                total = total + self.kl_weight * similarity_kl(small, full, temperature=self.kl_temperature)
        return total

    def extra_repr(self) -> str:
        return f"pairs={self.pairs}, kl_weight={self.kl_weight}, kl_temperature={self.kl_temperature}"


class TwoDMatryoshka(torch.nn.Module):
    """2D Matryoshka sentence embeddings (2DMSE; Li et al. 2024, "2D Matryoshka Sentence Embeddings",
    arXiv:2402.14776; sentence-transformers' ``Matryoshka2dLoss``): every step the last layer is trained at every
    prefix in ``dims``, and one earlier layer, drawn uniformly from ``layers`` (torch's seeded RNG, so a resumed run
    draws the same), at every prefix too, plus ``kl_weight`` times :func:`similarity_kl` of that layer (full width)
    toward the last.

    ``pairs`` give the sizes as :class:`Starbucks` does (their layers and dims; the last pair is the full model), so
    the two recipes train for the same grid; the drawn layer's losses weigh ``prior_weight``.
    """

    def __init__(self, loss: torch.nn.Module, pairs, *, prior_weight: float = 1.0, kl_weight: float = 1.0,
                 kl_temperature: float = 0.3) -> None:
        super().__init__()
        self.loss = _elastic_inner(loss, "TwoDMatryoshka")
        self.pairs = check_pairs(pairs, "TwoDMatryoshka")
        self.dims = sorted({dim for _, dim in self.pairs})
        self.layers = sorted({layer for layer, _ in self.pairs})
        if len(self.layers) < 2:
            raise InvalidInputError(f"TwoDMatryoshka: pairs must name at least two layers (one to draw below the "
                                    f"last), got layers {self.layers}. Use Matryoshka for one layer.")
        self.prior_weight = _positive_float(prior_weight, "TwoDMatryoshka", "prior_weight")
        self.kl_weight = (float(kl_weight) if kl_weight == 0
                          else _positive_float(kl_weight, "TwoDMatryoshka", "kl_weight"))
        self.kl_temperature = _positive_float(kl_temperature, "TwoDMatryoshka", "kl_temperature")
        self.spec = ",".join(f"{layer}x{dim}" for layer, dim in self.pairs)

    def _prefixes(self, parts: list[torch.Tensor], batch: Mapping) -> torch.Tensor:
        return sum(self.loss.from_embeddings([p[:, :d] for p in parts], batch) for d in self.dims)

    def forward(self, encoder, batch: Mapping) -> torch.Tensor:
        _check_pairs_fit(encoder, self.pairs, "TwoDMatryoshka")
        last = self.layers[-1]
        drawn = self.layers[int(torch.randint(len(self.layers) - 1, (1,)))]
        groups, _ = self.loss.groups(batch)
        parts = _layer_parts(encoder, groups, [drawn, last])
        total = self._prefixes(parts[last], batch) + self.prior_weight * self._prefixes(parts[drawn], batch)
        if self.kl_weight:
            total = total + self.kl_weight * similarity_kl(parts[drawn], parts[last], temperature=self.kl_temperature)
        return total

    def extra_repr(self) -> str:
        return f"pairs={self.pairs}, prior_weight={self.prior_weight}, kl_weight={self.kl_weight}"
