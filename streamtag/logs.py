"""Where streamtag's log lines go, and how often a repeated failure may be logged.

- ``log_to_stderr``: the command lines' console log (the daemon's, with ``--log-format
  json`` for a service manager; the trainer's and the tools' brief lines);
- ``log_to_file``: a run's own log file (``train.log``);
- ``RateLimitedLog``: for loops that must not die (capture, publishers, control): the first
  failure of a kind is logged at once, repeats at most once per interval with the number
  suppressed in between.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

#: ``log_to_stderr`` formats: the daemon's (level and logger), brief (time and message, for
#: training and the tools), json (one object per line).
LogFormat = Literal["text", "brief", "json"]
_FORMATS = {
    "text": ("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"),
    "brief": ("%(asctime)s %(message)s", "%H:%M:%S"),
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time [s since the epoch], level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"time": round(record.created, 3), "level": record.levelname.lower(),
                           "logger": record.name, "message": record.getMessage()})


def log_to_stderr(level: str | int = logging.INFO, fmt: LogFormat = "brief", *,
                  logger: str = "streamtag", replace: bool = True) -> logging.Logger:
    """Send ``logger``'s records (and its children's) to stderr at ``level`` in ``fmt``.

    replace: drop the logger's handlers first and stop propagation to the root logger (the
    daemon owns its process); False leaves a logger that already has a handler as it is (a
    training command run inside another program or test keeps that program's set-up).
    """
    target = logging.getLogger(logger)
    if not replace and target.handlers:
        return target
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(*_FORMATS[fmt]))
    if replace:
        target.handlers[:] = [handler]
        target.propagate = False
    else:
        target.addHandler(handler)
    target.setLevel(level.upper() if isinstance(level, str) else level)
    return target


def log_to_file(logger: logging.Logger, path: Path) -> logging.Handler:
    """Add a file handler writing ``path`` (UTF-8, folder created) to ``logger`` and make sure
    it logs at least at info level. Returns the handler: the caller removes and closes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    return handler


class RateLimitedLog:
    """Log per ``key`` at most once every ``interval_s`` [s].

    A publisher whose target is down fails on every hop; logging each failure would flood the
    log (and cost time in the analysis loop), logging none would hide it.
    """

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def log(
        self, key: str, level: int, msg: str, *args: object, exc_info: bool = False
    ) -> bool:
        """Log ``msg % args`` under ``key`` unless it was logged less than the interval ago;
        ``exc_info`` adds the current exception's traceback.

        Returns:
            True if the message was emitted.
        """
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            msg += f" ({suppressed} similar suppressed)"
        self._logger.log(level, msg, *args, exc_info=exc_info)
        return True
