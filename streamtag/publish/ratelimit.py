"""Rate-limited logging for loops that must not die: the first failure of a kind is logged at
once, repeats at most once per interval with the number suppressed in between."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable


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
