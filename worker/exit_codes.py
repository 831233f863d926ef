"""The exit codes of every ``eurovoc-worker`` command, in one place (the docs list these).

===  ===========  ==========================================================================
 0   OK           done, or stopped cleanly (SIGTERM/SIGINT: drained and committed)
 1   FATAL        an error the command cannot go on after: the engine died, a delivery failed
                  for good, Kafka unreachable, a topic deleted while running, the worker
                  stalled, a shutdown past its deadline, the transactional producer fenced
 2   CONFIG       invalid settings or command line, an invalid checkpoint, a missing topic or
                  input file, Kafka refusing the credentials or an untrusted broker certificate
 3   REJECTED     records were rejected: ``run`` stopped at the dead-letter limit (after
                  committing the work before it); ``classify`` skipped lines it could not label
                  (without ``--skip-invalid``)
128+N            a second SIGTERM/SIGINT (signal N) ended the process at once; ``replay-dlq``
                  stopped by signal N
===  ===========  ==========================================================================
"""

from enum import IntEnum


class ExitCode(IntEnum):
    """A command's exit status; the table above says when each is used."""

    OK = 0
    FATAL = 1
    CONFIG = 2
    REJECTED = 3
    DLQ_LIMIT = 3  # an alias of REJECTED: what it means for ``run``


def signal_exit_code(signum: int) -> int:
    """The exit code of a process ended by signal ``signum`` (the shell's convention)."""
    return 128 + signum
