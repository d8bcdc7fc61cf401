"""Fine-tuning: training data and batches (:mod:`embedlab.train.data`), contrastive / scored losses
(:mod:`embedlab.train.losses`), hard-negative mining (:mod:`embedlab.train.mining`) and the trainer
(:mod:`embedlab.train.fit`, exact resume from :mod:`embedlab.train.checkpoint`) over the torch runtime of
:class:`~embedlab.models.Encoder`."""

from embedlab.train.data import Batch, Batches, PairDataset
from embedlab.train.fit import NonFiniteLossError, TrainResult, fit
from embedlab.train.losses import CachedInfoNCE, CoSENT, GISTEmbed, InfoNCE, MaxSimContrastive
from embedlab.train.mining import MiningSummary, mine_hard_negatives

__all__ = ["Batch", "Batches", "PairDataset", "CachedInfoNCE", "CoSENT", "GISTEmbed", "InfoNCE", "MaxSimContrastive", "fit", "TrainResult",
           "NonFiniteLossError", "mine_hard_negatives", "MiningSummary"]
