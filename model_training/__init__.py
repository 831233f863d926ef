"""eurovoc-stream training: fine-tune, evaluate, tune thresholds and export checkpoints."""

__version__ = "0.1.0"
