"""Progress a user can watch: a tqdm bar on a terminal, plain lines at a steady interval in a log file.

A SLURM job's log is a file, not a terminal: there a bar's carriage returns would pile up into one unreadable line,
so it gets one line per interval (and the first and last), each with done / total, rate, elapsed time and ETA.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

LOG_INTERVAL_S = 30.0  # a line every 30 s: a 6-hour job writes ~720 lines


def _clock(seconds: float) -> str:
    from tqdm import tqdm

    return tqdm.format_interval(max(0.0, seconds))


class Progress:
    """Count work done towards a known total, and show it with a few fields (loss, tokens/s, ...).

    ``update(n, **fields)`` does both. A caller whose fields cost something to read (a value on the GPU: reading
    it waits for the device) calls ``advance(n)`` every time and ``report(**fields)`` only when ``due()``."""

    def __init__(self, total: int, what: str, unit: str = "step", *, initial: int = 0, stream: TextIO | None = None,
                 interval_s: float = LOG_INTERVAL_S, bar: bool | None = None):
        self.total, self.what, self.unit = total, what, unit
        self.units = unit + ("es" if unit.endswith(("s", "sh", "ch", "x", "z")) else "s")  # "batches", "steps"
        self.done = self._started_at = initial
        self.stream = stream if stream is not None else sys.stderr
        self.started = self.last_report = time.perf_counter()
        isatty = getattr(self.stream, "isatty", lambda: False)
        self._bar = None
        if bar if bar is not None else isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=what, unit=unit, file=self.stream, dynamic_ncols=True)
            self.interval_s = min(interval_s, 2.0)  # a bar's fields may change more often than a log's lines
        else:
            self.interval_s = interval_s
            self.note(f"{unit} {initial}/{total} to go" if initial else f"{total} {unit if total == 1 else self.units} to go")

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)

    def due(self) -> bool:
        """Whether a report is due: an interval has passed since the last, or the work is done."""
        return time.perf_counter() - self.last_report >= self.interval_s or self.done >= self.total

    def report(self, **fields) -> None:
        self.last_report = time.perf_counter()
        if self._bar is not None:
            self._bar.set_postfix({name: _format(value) for name, value in fields.items()})
        else:
            self._line(fields)

    def update(self, n: int = 1, **fields) -> None:
        self.advance(n)
        if self.due():
            self.report(**fields)

    def note(self, message: str) -> None:
        """A line of its own (an epoch's validation loss), kept apart from the bar's."""
        if self._bar is not None:
            self._bar.write(f"{self.what}: {message}", file=self.stream)
        else:
            self.stream.write(f"{self.what}: {message}\n")
            self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _line(self, fields: dict) -> None:
        elapsed = time.perf_counter() - self.started
        counted = self.done - self._started_at
        rate = counted / elapsed if elapsed > 0 and counted else None
        parts = [f"{self.what}: {self.unit} {self.done}/{self.total}"]
        if self.total:
            parts[0] += f" ({100 * self.done / self.total:.0f}%)"
        parts += [f"{name} {_format(value)}" for name, value in fields.items()]
        parts.append(f"{rate:.3g} {self.units}/s" if rate else f"0 {self.units}/s")
        parts.append(f"elapsed {_clock(elapsed)}")
        if rate and self.done < self.total:
            parts.append(f"ETA {_clock((self.total - self.done) / rate)}")
        self.stream.write(" | ".join(parts) + "\n")
        self.stream.flush()


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)
