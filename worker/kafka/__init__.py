"""Kafka for the worker: client construction (``clients``), the kafka-python workarounds (in one
module, ``workarounds``), the first connection and its error classes (``access``), and the
topics the worker needs (``topics``)."""
