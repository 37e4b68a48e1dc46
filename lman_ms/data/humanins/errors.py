"""Errors that name where the bad input is, and the raise/skip policy that converters report through."""
from __future__ import annotations

import contextlib
import threading
from collections import Counter
from typing import Optional


class AnnotationError(ValueError):
    """Bad source data. ``str()`` reads ``path:line: message`` or ``path [key]: message``."""

    def __init__(self, path: str, message: str, line: Optional[int] = None, key: Optional[str] = None):
        self.path, self.line, self.key, self.message = path, line, key, message
        where = str(path)
        if line is not None:
            where += f":{line}"
        if key is not None:
            where += f" [{key}]"
        super().__init__(f"{where}: {message}")


class ErrorPolicy:
    """``raise``: the first bad item stops the build with an :class:`AnnotationError`.
    ``skip``: bad items are dropped, counted and the first few kept for the summary."""

    MODES = ("raise", "skip")

    def __init__(self, mode: str = "raise", keep: int = 20):
        if mode not in self.MODES:
            raise ValueError(f"on_error must be one of {self.MODES}, got {mode!r}")
        self.mode = mode
        self.skipped = 0
        self.examples: list[str] = []
        self.by_file: Counter = Counter()
        self._keep = keep
        self._lock = threading.Lock()

    def report(self, err: AnnotationError) -> None:
        """Raise ``err`` or count it, depending on the mode."""
        if self.mode == "raise":
            raise err
        with self._lock:
            self.skipped += 1
            self.by_file[str(err.path)] += 1
            if len(self.examples) < self._keep:
                self.examples.append(str(err))

    @contextlib.contextmanager
    def guard(self, path: str, line: Optional[int] = None, key: Optional[str] = None):
        """Turn any exception inside the block into an AnnotationError at ``path:line [key]``.

        Use ``with policy.guard(...) as g:`` then check ``g.ok`` before using what the block produced."""
        state = _GuardState()
        try:
            yield state
        except AnnotationError as e:
            state.ok = False
            self.report(e)
        except Exception as e:  # noqa: BLE001 - any parsing failure becomes a located error
            state.ok = False
            self.report(AnnotationError(path, f"{type(e).__name__}: {e}", line=line, key=key))

    def merge(self, other: "ErrorPolicy") -> None:
        self.skipped += other.skipped
        self.by_file.update(other.by_file)
        self.examples.extend(other.examples[: max(0, self._keep - len(self.examples))])


class _GuardState:
    ok = True
