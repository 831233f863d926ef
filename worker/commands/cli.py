"""``eurovoc-worker``: the console script, composing the sub-commands.

    eurovoc-worker run ...          # the Kafka worker (worker.commands.run, worker.app)
    eurovoc-worker classify ...     # files in, labels out (worker.commands.classify)
    eurovoc-worker produce ...      # documents from a file to a topic (worker.commands.produce)
    eurovoc-worker tail ...         # the label outputs of a topic (worker.commands.tail)
    eurovoc-worker replay-dlq ...   # dead letters back to the input topic
"""

import argparse
import logging
import os
import sys

from worker import __version__
from worker.commands import classify, produce, replay_dlq, run, tail


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eurovoc-worker",
        description="Streaming EuroVoc document classifier.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (run, classify, produce, tail, replay_dlq):
        command.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The program (``argv`` None: ``sys.argv``), or a call with ``argv`` that returns the code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    code = args.func(args)
    if argv is None and args.command == "run":
        # The worker process ends here, without the interpreter's teardown: garbage-collecting
        # torch and transformers took 30 s on a busy machine, past the exit-time promises.
        # Everything committed was acknowledged and the clients are closed already.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
