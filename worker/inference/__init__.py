"""Scoring text: everything between a document and its labels, and nothing of Kafka.

The engine (``engine``) takes scoring requests and gives engine results (``requests``); it
tokenizes documents into model windows (``tokenization``), batches them under a token budget
(``batching``), runs the model (``model_runner``, built by ``runner_setup`` from the one
checkpoint loader, ``checkpoint``), combines a document's windows (``aggregation``), applies the
thresholds (``decision``) and builds the label message (``output_builder``). Its settings are
``engine_settings``, its metrics ``engine_metrics``; callers feed it through ``feeding``;
``batch_scoring`` scores a list of documents through it in-process (training's evaluation and
threshold tuning); ``cpu_resources`` and ``compilation`` are what the runner asks of the
machine.

Nothing here imports ``worker.pipeline``, ``worker.kafka``, ``worker.runtime`` or
``worker.commands`` (``tests/unit/test_layout.py`` enforces it). Importing this package imports
no torch: the modules that need it import it themselves.
"""
