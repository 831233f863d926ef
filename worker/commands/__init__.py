"""The ``eurovoc-worker`` sub-commands (composed by ``cli``): ``run`` (the worker is composed in
``worker.app``), ``classify``, ``produce``, ``tail`` and ``replay-dlq``."""
