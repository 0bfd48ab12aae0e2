"""Progress of a tune run, per phase (ground truth, builds, refinement, export).

On a terminal (stderr is a TTY): one bar per phase, redrawn in place, with the elapsed time and
an ETA = elapsed * (work left / work done), where work is counted in the phase's own units
(base blocks for the ground truth, sweep entries + 1 per build for the builds), so a slow
first build does not promise a fast end. Otherwise (a log file, a pipe): one line per phase
when it ends, nothing in between.
"""
import sys
import time

WIDTH = 24


class Phase:
    """One phase: ``Phase(name, total, stream)``, then ``step(amount, what)`` and ``done(summary)``.
    stream None: silent."""

    def __init__(self, name, total, stream=sys.stderr):
        self.name, self.total, self.stream = name, max(total, 1e-9), stream
        self.done_units, self.t0 = 0.0, time.perf_counter()
        self.tty = stream is not None and hasattr(stream, "isatty") and stream.isatty()
        if self.tty:
            self._draw("")

    def _draw(self, what):
        frac = min(1.0, self.done_units / self.total)
        elapsed = time.perf_counter() - self.t0
        eta = f"ETA {elapsed * (1 - frac) / frac:.0f} s" if frac > 0 else "ETA ?"
        bar = "#" * round(WIDTH * frac) + "." * (WIDTH - round(WIDTH * frac))
        self.stream.write(f"\r[tune] {self.name:<12} [{bar}] {100 * frac:3.0f}%  "
                          f"{elapsed:.1f} s, {eta}  {what[:40]:<40}")
        self.stream.flush()

    def step(self, amount=1, what=""):
        self.done_units += amount
        if self.tty:
            self._draw(what)

    def done(self, summary=""):
        elapsed = time.perf_counter() - self.t0
        if self.stream is None:
            return elapsed
        if self.tty:
            self.stream.write("\r" + " " * (WIDTH + 110) + "\r")
        self.stream.write(f"[tune] {self.name}: {summary + ', ' if summary else ''}"
                          f"{elapsed:.1f} s\n")
        self.stream.flush()
        return elapsed
