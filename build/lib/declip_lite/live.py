"""Live training curves: in Jupyter, a run redraws its named terms and its scale every few
seconds in one picture beside the progress bar. Headless (papermill, CI, a script) it costs
nothing: no figure is drawn. ``DECLIP_LIVE=1`` / ``0`` forces it on or off."""
import base64
import io
import os
import time


def enabled():
    """A person is watching: a Jupyter kernel, not CI, not switched off (``notebooks/run.py``,
    which runs the notebooks headless, sets ``DECLIP_LIVE=0``)."""
    flag = os.environ.get("DECLIP_LIVE")
    if flag is not None:
        return flag == "1"
    if os.environ.get("CI") == "true":
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return type(get_ipython()).__name__ == "ZMQInteractiveShell"


class LiveCurves:
    """One HTML picture (``<img class="declip-live">``), replaced in place every ``every`` seconds."""
    every = 3.0

    def __init__(self, title):
        self.title, self.handle, self.drawn = title, None, -float("inf")

    def update(self, history, final=False):
        if not history or (not final and time.perf_counter() - self.drawn < self.every):
            return
        from IPython.display import HTML, display

        from . import viz  # matplotlib only when a person watches: a training process never loads it

        buffer = io.BytesIO()
        viz.training_curves(history, self.title).savefig(buffer, format="png", dpi=72)
        picture = HTML(f'<img class="declip-live" alt="live training curves" '
                       f'src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">')
        if self.handle is None:
            self.handle = display(picture, display_id=True)
        else:
            self.handle.update(picture)
        self.drawn = time.perf_counter()
