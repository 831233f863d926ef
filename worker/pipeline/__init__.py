"""The stream processor and the chain of steps it drives.

``processor`` owns the consumer and runs the loop; ``rebalance`` handles assignment and
revocation; ``in_flight`` tracks every record from fetch to commit (its contiguous watermarks are
what gets committed); ``work_items`` is what flows through the steps; ``progress`` marks what the
watchdog watches; ``dlq_policy`` is the dead-letter limit. ``steps/`` holds one file per step.
"""
