"""What a newOrder run shows of where each section is while it waits: a
line per step, with the seconds since the section's order began.

At a terminal (the master's stderr), the main steps (validating,
finalizing, and how the section ended), and nothing when stderr is no
terminal, so that a cron mail or a journal gets what it always got; with
`-v` every step, terminal or not (`--debug` does not imply it, so that its
lines stay together by section).  Written at once, not held with the
section's messages (lacme.log.held): it is about now.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO


class Progress:
    """The lines of a run, on STREAM, timed by CLOCK (seconds, monotonic)."""

    def __init__(
        self,
        stream: TextIO,
        *,
        verbose: bool,
        quiet: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.verbose = verbose
        self.terminal = not quiet and stream.isatty()
        self.clock = clock
        self._began: dict[str, float] = {}

    def begin(self, section: str, step: str) -> None:
        """SECTION's order begins, at STEP (shown only with -v)."""
        self._began[section] = self.clock()
        self.step(section, step, detail=True)

    def step(self, section: str, step: str, *, detail: bool = False) -> None:
        """SECTION is at STEP: shown at a terminal unless it is a DETAIL,
        and with -v always."""
        if not (self.verbose or (self.terminal and not detail)):
            return
        began = self._began.get(section)
        seconds = "" if began is None else f" ({self.clock() - began:.1f} s)"
        self.stream.write(f"[{section}] {step}{seconds}\n")
        self.stream.flush()
