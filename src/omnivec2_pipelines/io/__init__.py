"""Kedro datasets the project needs: tokenized array bundles, model checkpoints and chunked tables."""

from omnivec2_pipelines.io.datasets import ArrayBundleDataset, AtomicDataset, CheckpointDataset, CheckpointSetDataset
from omnivec2_pipelines.io.tables import TableChunksDataset

__all__ = ["ArrayBundleDataset", "AtomicDataset", "CheckpointDataset", "CheckpointSetDataset", "TableChunksDataset"]
