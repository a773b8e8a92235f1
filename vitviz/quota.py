"""What a training run may take from the server every visitor shares.

Three limits, set in `vitviz.limits`:

- `PLACES`: how many runs train at once in this process, every session's together. A run takes a
  place when it starts or resumes and gives it back when its thread ends.
- `Allowance.cpu_limit`: the CPU-seconds one run may use in all, resumes included.
- `Allowance.heartbeat_seconds`: a run whose browser tab has not checked in (`touch`) for this long
  stops itself. A closed tab stops checking in; garbage collection of its session would come far
  later, or never.

Nothing here imports Streamlit. What it says to a visitor is a `vitviz.i18n.Message`, translated where shown.
"""

from __future__ import annotations

import threading
import time

from vitviz.i18n import Message, plural_message


class ServerBusy(RuntimeError):
    """No place for another run now; the message is one sentence for the visitor."""


class Places:
    """The server-wide count of runs training at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.taken = 0

    def take(self, limit: int) -> None:
        """Take a place, or raise ServerBusy when `limit` runs already train."""
        with self._lock:
            if limit <= 0:
                raise ServerBusy(Message("Training is turned off on this server."))
            if self.taken >= limit:
                raise ServerBusy(plural_message(
                    "The server is busy: {count} run in progress, as many as it trains at once. Your run has not "
                    "started: try again when one has finished.",
                    "The server is busy: {count} runs in progress, as many as it trains at once. Your run has not "
                    "started: try again when one has finished.", self.taken))
            self.taken += 1

    def give_back(self) -> None:
        with self._lock:
            self.taken -= 1


PLACES = Places()  # the one count of the process: every session's runs share it


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
