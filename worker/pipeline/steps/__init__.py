"""The steps of the chain, one a file, composed in ``worker.app``::

    StreamProcessor ─► DecodeStep ─► ClassifyStep ─► ProduceStep ─► CommitStep
                           │ rejected       │ failed      ▲
                           └────────► DeadLetterStep ─────┘

``base`` is the step interface (``Step``); with ``--delivery exactly-once`` one
``TransactionStep`` (``transaction``) takes the place of the produce and commit steps. The
dead-letter records are built in ``dead_letter``, the label records in ``produce``.
"""
