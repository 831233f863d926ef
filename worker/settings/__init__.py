"""The one settings model of the worker (``worker_settings``), its groups (``groups``,
``kafka_connection``; the engine's own group is ``worker.inference.engine_settings``), the
replay command's settings (``replay``) and the generator of every command line from them."""
