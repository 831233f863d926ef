"""eurovoc-stream worker: Kafka in, transformer micro-batches, labels out."""

__version__ = "0.1.0"
