"""Kedro datasets the project needs: tokenized array bundles and model checkpoints."""

from omnivec2_pipelines.io.datasets import ArrayBundleDataset, AtomicDataset, CheckpointDataset

__all__ = ["ArrayBundleDataset", "AtomicDataset", "CheckpointDataset"]
