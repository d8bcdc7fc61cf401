"""Fine-tuning: training data and batches (:mod:`embedlab.train.data`), contrastive / scored losses
and their elastic wrappers (Matryoshka, Starbucks, 2DMSE; :mod:`embedlab.train.losses`), hard-negative mining (:mod:`embedlab.train.mining`), cross-encoder losses
(:mod:`embedlab.train.rerank_losses`) and the trainer
(:mod:`embedlab.train.fit`, exact resume from :mod:`embedlab.train.checkpoint`) over the torch runtime of
:class:`~embedlab.models.Encoder`; distillation into a teacher's space (:mod:`embedlab.train.distill`, LEAF),
compatible upgrades (:mod:`embedlab.train.compat`) and model soups (:mod:`embedlab.train.soup`)."""

from embedlab.train.compat import BackwardCompatible, align, fit_map
from embedlab.train.data import Batch, Batches, PairDataset
from embedlab.train.distill import Distillation, onnx_student, teacher_targets, truncated_student
from embedlab.train.fit import NonFiniteLossError, TrainResult, fit
from embedlab.train.losses import (CachedInfoNCE, CoSENT, GISTEmbed, InfoNCE, Matryoshka, MaxSimContrastive, Starbucks,
                                   TwoDMatryoshka)
from embedlab.train.mining import MiningSummary, mine_hard_negatives
from embedlab.train.rerank_losses import BinaryCrossEntropy, ListwiseSoftmax
from embedlab.train.soup import SoupResult

__all__ = ["Batch", "Batches", "PairDataset", "CachedInfoNCE", "CoSENT", "GISTEmbed", "InfoNCE", "MaxSimContrastive", "Matryoshka", "Starbucks",
           "TwoDMatryoshka", "BinaryCrossEntropy", "ListwiseSoftmax", "fit", "TrainResult",
           "NonFiniteLossError", "mine_hard_negatives", "MiningSummary", "Distillation", "teacher_targets",
           "truncated_student", "onnx_student", "BackwardCompatible", "align", "fit_map", "SoupResult"]
# distill() and soup() are reached through their modules (embedlab.train.distill.distill, embedlab.train.soup.soup):
# exported here, the functions would hide the modules of the same names
