"""Training in pure PyTorch (never imports Kedro): one trainer, objectives per stage, checkpoints."""

from omnivec2_pipelines.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from omnivec2_pipelines.training.trainer import Trainer, TrainerConfig

__all__ = ["Checkpoint", "Trainer", "TrainerConfig", "load_checkpoint", "save_checkpoint"]
