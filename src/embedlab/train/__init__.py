"""Fine-tuning: training data and batches (:mod:`embedlab.train.data`) and contrastive / scored losses
(:mod:`embedlab.train.losses`) over the torch runtime of :class:`~embedlab.models.Encoder`."""

from embedlab.train.data import Batch, Batches, PairDataset
from embedlab.train.losses import CachedInfoNCE, CoSENT, GISTEmbed, InfoNCE

# the trainer: from embedlab.train.fit import fit  (and add "fit" to __all__)

__all__ = ["Batch", "Batches", "PairDataset", "CachedInfoNCE", "CoSENT", "GISTEmbed", "InfoNCE"]
