"""Loss-crash recovery, as in the reference: when the loss goes non-finite or spikes, go back to
the last good state, lower the learning rate, and go on; give up after a few tries. And a calm
Ctrl-C: stop at the end of the current step.

A spike is a loss above ``spike_factor`` times the median of the recent losses and at least one
nat above it (the reference watches for the same two faults; its remedy also lowers the learning
rate). The margin keeps a memorising run, whose loss wobbles between 0.003 and 0.04, from
counting as a crash. Under torchrun a
crash stops the run instead, naming the step: every rank would have to agree to go back.
"""
import math
import signal
import statistics
import threading

from .distributed import world

SPIKE_WINDOW = 100   # recent steps whose median loss a spike is measured against
SPIKE_MIN_STEPS = 20  # no spike check before this many finite steps
SPIKE_MIN_RISE = 1.0  # nats: a smaller rise over the median is never a spike, whatever the ratio


class LossCrash(FloatingPointError):
    """The loss at ``step`` was non-finite (``kind="nan"``) or a spike (``kind="spike"``), or the
    weights were non-finite when a checkpoint was due (``kind="weights"``)."""

    def __init__(self, step, loss, kind):
        self.step, self.loss, self.kind = step, loss, kind
        what = f"the weights became non-finite by step {step}" if kind == "weights" else \
            f"the loss became {loss} at step {step}" + (" (a spike)" if kind == "spike" else "")
        super().__init__(f"Trainer: {what}")


def first_crash(rows, earlier, spike_factor):
    """The first of ``rows`` (new history rows) whose loss is non-finite or a spike over
    ``earlier``'s median."""
    recent = [r["loss"] for r in earlier[-SPIKE_WINDOW:] if math.isfinite(r["loss"])]
    median = statistics.median(recent) if len(recent) >= SPIKE_MIN_STEPS else 0.0
    limit = max(spike_factor * median, median + SPIKE_MIN_RISE) if spike_factor and median > 0 else math.inf
    for row in rows:
        if not math.isfinite(row["loss"]):
            return LossCrash(row["step"], row["loss"], "nan")
        if row["loss"] > limit:
            return LossCrash(row["step"], row["loss"], "spike")
    return None


def give_up_message(crash, recoveries, lr_factor):
    """The error after the last allowed recovery: it names the first bad step and what was tried."""
    first = recoveries[0] if recoveries else {"step": crash.step, "loss": crash.loss}
    return (f"Trainer: the loss became {first['loss']} at step {first['step']}; {len(recoveries)} recoveries "
            f"(back to the last good state, learning rate x{lr_factor} each time) did not help: lower the "
            f"learning rate, or resume from the last checkpoint")


class StepBoundaryInterrupt:
    """Ctrl-C (SIGINT) during ``fit`` asks to stop after the current step, so the saved state is a
    whole step's; a second Ctrl-C interrupts at once. Only in the main thread of a single process:
    under torchrun every rank must stop at the same step, so the default handler stays."""

    def __init__(self):
        self.requested, self._previous = False, None

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        main = threading.current_thread() is threading.main_thread() and world()[1] == 1
        if main and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # ignored stays ignored
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
