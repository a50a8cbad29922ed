"""Knowledge distillation for Keras 3, composable with pruning and QAT."""

from tfopt.distillation.callbacks import DistillationScheduler
from tfopt.distillation.distiller import Distiller
from tfopt.distillation.heads import detect_head
from tfopt.distillation.losses import FeatureDistillation
from tfopt.distillation.losses import feature_loss
from tfopt.distillation.losses import soft_target_loss

__all__ = [
    "DistillationScheduler",
    "Distiller",
    "FeatureDistillation",
    "detect_head",
    "feature_loss",
    "soft_target_loss",
]
