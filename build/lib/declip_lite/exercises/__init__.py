"""Exercises a student can check. Each notebook has at least two:

    def my_clip_loss(image, text, scale):
        ...                                   # the student's code
    exercises.check("01.clip_loss", my_clip_loss)

An implementation is graded on random inputs against the library function it re-derives; a
prediction against what the notebook measured (``check("05.self_rate", answer, self_rate=...)``).
An answer still ``None`` (or a function whose body is still ``...``) prints "not attempted" and
never stops a run; a wrong one gets a hint. ``check`` returns a :class:`Verdict`. The answers
live outside the notebooks, in ``solutions/``.
"""
from . import code, predictions  # noqa: F401  (each registers its exercises)
from .grading import EXERCISES, Accepted, NotAttempted, Verdict, check  # noqa: F401
from .predictions import SHORTCUT_MARGIN  # noqa: F401
