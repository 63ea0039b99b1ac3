"""What every ``streamtag`` command line shares: exit codes, the one-line error, and running a
parsed command with one mapping of errors to exit codes.

Exit codes: 0 ok, 2 usage or config error (the message names the key or flag), 1 runtime failure.
Both ``streamtag.cli`` (every command) and ``streamtag.train.cli`` (``python -m`` for torchrun)
import this, and neither imports the other's module at the top: no import cycle.
"""

from __future__ import annotations

import argparse
import sys

from streamtag.errors import ConfigError, StreamtagError

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 too; keep its message short
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"streamtag: error: {message}\n")


def error(msg: str) -> None:
    """One line on stderr, prefixed with the program name."""
    print(f"streamtag: {msg}", file=sys.stderr)


def run(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run its command (``args.func``) → the exit code."""
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except ConfigError as e:  # a config key or flag is wrong: name each problem, exit 2
        for p in e.problems:
            error(p)
        return EXIT_USAGE
    except StreamtagError as e:
        error(str(e))
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        return 130
