"""Progress of a list run: a tqdm bar on a terminal, a callback for other layers, or nothing.

>>> events = []
>>> progress = make_progress(callback=events.append, description="crm.deal.list")
>>> progress.set_total(120); progress.update(50); progress.close()
>>> events[-1].rows, events[-1].total, events[-1].done
(50, 120, True)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class ProgressEvent:
    """A snapshot handed to a progress callback after every change."""

    description: str
    rows: int
    total: int | None
    elapsed_s: float
    done: bool = False

    @property
    def rate(self) -> float:
        """Rows per second so far."""
        return self.rows / self.elapsed_s if self.elapsed_s > 0 else 0.0


ProgressCallback = Callable[[ProgressEvent], Any]


@runtime_checkable
class Progress(Protocol):
    """What a list run reports to: rows as they arrive, the total once known, the end."""

    def set_total(self, total: int | None) -> None: ...

    def update(self, rows: int) -> None: ...

    def close(self) -> None: ...


class NullProgress:
    """Reports nothing (verbose=False, or not a terminal)."""

    def set_total(self, total: int | None) -> None:
        """Ignore the total."""

    def update(self, rows: int) -> None:
        """Ignore the rows."""

    def close(self) -> None:
        """Nothing to close."""


class CallbackProgress:
    """Calls `callback(ProgressEvent)` on every update, and once more when closed."""

    def __init__(self, callback: ProgressCallback, *, description: str = "") -> None:
        self._callback = callback
        self._description = description
        self._started = time.monotonic()
        self._rows = 0
        self._total: int | None = None
        self._closed = False

    def _emit(self, *, done: bool = False) -> None:
        elapsed = time.monotonic() - self._started
        self._callback(ProgressEvent(self._description, self._rows, self._total, elapsed, done))

    def set_total(self, total: int | None) -> None:
        """Record the total when the portal reports it."""
        if total != self._total:
            self._total = total
            self._emit()

    def update(self, rows: int) -> None:
        """Add `rows` rows."""
        self._rows += rows
        self._emit()

    def close(self) -> None:
        """Send the final event (done=True) once."""
        if not self._closed:
            self._closed = True
            self._emit(done=True)


class TqdmProgress:
    """A tqdm bar counting rows, with the total when known and the rate."""

    def __init__(self, *, description: str = "", file: Any = None) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(desc=description, unit=" rows", total=None, file=file, leave=True)

    def set_total(self, total: int | None) -> None:
        """Show the total once known."""
        if total is not None and total != self._bar.total:
            self._bar.total = total
            self._bar.refresh()

    def update(self, rows: int) -> None:
        """Advance by `rows`."""
        self._bar.update(rows)

    def close(self) -> None:
        """Close the bar."""
        self._bar.close()


def make_progress(
    *,
    verbose: bool | None = None,
    callback: ProgressCallback | None = None,
    description: str = "",
) -> Progress:
    """Pick a reporter: the callback if given, else tqdm when `verbose` (None: on a TTY)."""
    if callback is not None:
        return CallbackProgress(callback, description=description)
    if verbose is None:
        verbose = sys.stderr.isatty()
    return TqdmProgress(description=description) if verbose else NullProgress()
