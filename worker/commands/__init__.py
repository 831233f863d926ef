"""The ``eurovoc-worker`` sub-commands: ``run`` (``cli``, which composes nothing itself: see
``worker.app``), ``classify``, ``produce`` / ``tail`` (``demo_io``) and ``replay-dlq``."""
