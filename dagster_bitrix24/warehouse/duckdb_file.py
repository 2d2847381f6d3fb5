"""A DuckDB file shared between processes: DuckDB lets one process at a time open a file,
and opening and closing it costs far more than a transaction (about 60 ms to open and 230
ms to close, which checkpoints the file, against 20-50 ms for a 20,000-row insert).

So the engine's connections come and go with each transaction (a NullPool), while a
process writing transactions back to back keeps the database open between them through one
extra connection, the anchor (DuckDB shares an open database among the connections of a
process). The file is let go of, for other processes:

- when the process has started no transaction for `IDLE` seconds (a timer);
- at the end of a transaction once the anchor was kept for `HOLD` seconds;
- at the end of a transaction when another process is waiting for the file: a process
  that finds the file locked keeps writing its pid to `<file>.waiting` while it retries
  (for up to `LOCK_WAIT` seconds), and a process that sees a fresh note from another pid
  closes its anchor and pauses `GIVE_WAY` seconds before it opens the file again, longer
  than the waiter's longest pause between tries.

The first transaction after a pause opens and closes the file as before: a process that
writes once (a state update, a schema change) does not keep the file.
"""

from __future__ import annotations

import atexit
import os
import random
import threading
import time
import weakref
from typing import Any

import sqlalchemy as sa

LOCK_WAIT = 120.0
IDLE = 0.25
HOLD = 10.0
GIVE_WAY = 0.7
_LONGEST_PAUSE = 0.25  # times 1-2: a waiter tries at least every 0.5 s
_FRESH = 1.5  # a waiting note older than this is from a process that stopped waiting


_KEEPERS: weakref.WeakSet[_FileKeeper] = weakref.WeakSet()


@atexit.register
def _let_go_at_exit() -> None:
    """Close every anchor before the interpreter stops: an idle timer closing one (DuckDB
    checkpoints the file in C++) while the interpreter shuts down aborts the process
    (exit code 134, seen after a 200,000-row benchmark)."""
    for keeper in list(_KEEPERS):
        keeper.let_go()


def share_duckdb_file(engine: sa.Engine) -> None:
    """Make `engine` (a DuckDB file's, NullPool) wait for the file and keep it open while
    transactions stream; nothing for an in-memory database."""
    if engine.dialect.name != "duckdb" or engine.url.database in (None, "", ":memory:"):
        return
    keeper = _FileKeeper(str(engine.url.database))
    _KEEPERS.add(keeper)

    @sa.event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        return keeper.connect(lambda: dialect.connect(*cargs, **cparams))

    @sa.event.listens_for(engine, "checkin")
    def _checkin(_dbapi_connection: Any, _record: Any) -> None:
        keeper.released()


class _FileKeeper:
    """The anchor connection of one file in this process, and when to let go of it."""

    def __init__(self, path: str) -> None:
        self.note = f"{path}.waiting"
        self.lock = threading.Lock()
        self.anchor: Any = None
        self.anchored_at = 0.0
        self.last_release = -IDLE
        self.active = 0
        self.timer: threading.Timer | None = None

    def connect(self, open_one: Any) -> Any:
        if self.anchor is None and self._other_waiting():
            time.sleep(GIVE_WAY)
        with self.lock:
            streaming = time.monotonic() - self.last_release < IDLE
            if self.anchor is None and streaming and not self._other_waiting():
                self.anchor = _open_waiting(open_one, self.note)
                self.anchored_at = time.monotonic()
            self.active += 1
        try:
            return _open_waiting(open_one, self.note)
        except BaseException:
            self.released()
            raise

    def released(self) -> None:
        """A transaction's connection went back: keep the anchor for the next one, or not."""
        with self.lock:
            self.active -= 1
            self.last_release = now = time.monotonic()
            if self.anchor is None:
                return
            if now - self.anchored_at > HOLD or self._other_waiting():
                self._close_anchor()
                return
            if self.timer is None:
                self.timer = threading.Timer(IDLE, self._idle)
                self.timer.daemon = True
                self.timer.start()

    def _idle(self) -> None:
        with self.lock:
            self.timer = None
            if self.anchor is None:
                return
            idle = time.monotonic() - self.last_release
            if self.active == 0 and idle >= IDLE:
                self._close_anchor()
            else:
                self.timer = threading.Timer(max(IDLE - idle, 0.01), self._idle)
                self.timer.daemon = True
                self.timer.start()

    def let_go(self) -> None:
        """Stop the idle timer and close the anchor (the process is ending)."""
        with self.lock:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            if self.anchor is not None:
                self._close_anchor()

    def _close_anchor(self) -> None:
        anchor, self.anchor = self.anchor, None
        anchor.close()  # the file closes when no transaction of this process has it open

    def _other_waiting(self) -> bool:
        """Another process wrote a fresh note that it waits for the file."""
        try:
            if time.time() - os.stat(self.note).st_mtime > _FRESH:
                return False
            with open(self.note, encoding="ascii") as note:
                return note.read().strip() != str(os.getpid())
        except (OSError, ValueError):
            return False


def _open_waiting(open_one: Any, note: str) -> Any:
    """A connection, trying again while another process holds the file (for up to
    `LOCK_WAIT` seconds) and saying so in the `note` file."""
    deadline = time.monotonic() + LOCK_WAIT
    pause = 0.02
    noted = False
    while True:
        try:
            connection = open_one()
        except Exception as error:
            if "lock" not in str(error).lower() or time.monotonic() > deadline:
                raise
            noted = _write_note(note) or noted
            time.sleep(pause * random.uniform(1, 2))
            pause = min(pause * 2, _LONGEST_PAUSE)
        else:
            if noted:
                _remove_own_note(note)
            return connection


def _write_note(note: str) -> bool:
    """Say this process waits for the file; False where the folder cannot be written to."""
    try:
        with open(note, "w", encoding="ascii") as file:
            file.write(str(os.getpid()))
    except OSError:  # a folder we cannot write to: we wait without saying so
        return False
    return True


def _remove_own_note(note: str) -> None:
    """Remove the waiting note once the file is open, unless another waiter rewrote it."""
    try:
        with open(note, encoding="ascii") as file:
            if file.read().strip() != str(os.getpid()):
                return
        os.remove(note)
    except OSError:
        pass
