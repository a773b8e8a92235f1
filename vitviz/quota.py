"""What a training run, or one visitor's long computation, may take from the server every visitor shares.

The limits are set in `vitviz.limits`:

- `PLACES`: how many runs train at once in this process, every session's together. A run takes a
  place when it starts or resumes and gives it back when its thread ends.
- `HEAVY`: how many long computations for one visitor run at once (a faithfulness score, a story file,
  a trace's zip), every session's together: each holds a place while it computes, on one torch thread.
- `Allowance.cpu_limit`: the CPU-seconds one run may use in all, resumes included.
- `Allowance.heartbeat_seconds`: a run whose browser tab has not checked in (`touch`) for this long
  stops itself. A closed tab stops checking in; garbage collection of its session would come far
  later, or never.

Nothing here imports Streamlit. What it says to a visitor is a `vitviz.i18n.Message`, translated where shown.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from vitviz.i18n import Message, plural_message


class ServerBusy(RuntimeError):
    """No place for another run now; the message is one sentence for the visitor."""


def _training_busy(taken: int) -> Message:
    return plural_message(
        "The server is busy: {count} run in progress, as many as it trains at once. Your run has not "
        "started: try again when one has finished.",
        "The server is busy: {count} runs in progress, as many as it trains at once. Your run has not "
        "started: try again when one has finished.", taken)


def _heavy_busy(_taken: int) -> Message:
    return Message("The server is busy with other visitors' long computations; try again in a moment.")


class Places:
    """A server-wide count of things running at once, each holding a place until it gives it back."""

    def __init__(self, busy: Callable[[int], Message] = _training_busy,
                 off: Message = Message("Training is turned off on this server.")) -> None:
        self._free = threading.Condition()
        self.taken = 0
        self._busy, self.off = busy, off  # the sentences for a full server and for a limit of 0

    def take(self, limit: int, wait: float = 0.0) -> None:
        """Take a place, waiting up to `wait` seconds for one; raise ServerBusy when `limit` are still taken."""
        with self._free:
            if limit <= 0:
                raise ServerBusy(self.off)
            if not self._free.wait_for(lambda: self.taken < limit, timeout=wait):
                raise ServerBusy(self._busy(self.taken))
            self.taken += 1

    def give_back(self) -> None:
        with self._free:
            self.taken -= 1
            self._free.notify()

    @contextmanager
    def holding(self, limit: int, wait: float = 0.0) -> Iterator[None]:
        """`take` a place for the `with` block, given back however the block ends."""
        self.take(limit, wait)
        try:
            yield
        finally:
            self.give_back()


PLACES = Places()  # the one count of the process: every session's runs share it
HEAVY = Places(_heavy_busy, Message("Long computations are turned off on this server."))  # every visitor's together


class Allowance:
    """What one run may still use, shared by its owner (who touches it) and its worker thread (who spends it)."""

    def __init__(self, cpu_limit: float, heartbeat_seconds: float) -> None:
        self.cpu_limit = cpu_limit  # 0: no limit
        self.heartbeat_seconds = heartbeat_seconds  # 0: never stop for silence
        self.cpu_used = 0.0  # over every start and resume of the run
        self.last_seen = time.monotonic()

    def touch(self) -> None:
        """The owner's tab is still there."""
        self.last_seen = time.monotonic()

    def exhausted(self) -> bool:
        return bool(self.cpu_limit) and self.cpu_used >= self.cpu_limit

    def abandoned(self) -> bool:
        return bool(self.heartbeat_seconds) and time.monotonic() - self.last_seen > self.heartbeat_seconds

    def limit_sentence(self) -> Message:
        return Message("Stopped: this run reached the server's limit of {limit:g} CPU-seconds.", limit=self.cpu_limit)

    def silence_sentence(self) -> Message:
        return Message("Stopped: this tab was not heard from for {seconds:g} seconds, so the server stopped training. "
                       "Resume carries on from here.", seconds=self.heartbeat_seconds)
