"""The one settings model of the worker (``worker_settings``), its groups (``groups``,
``kafka_connection``; the engine's own group is ``worker.inference.engine_settings``), the
replay command's settings (``replay``), the generator of every command line from them
(``flags``) and the engine group as the file commands' flags (``engine_flags``)."""
