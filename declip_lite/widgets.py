"""Thin ipywidgets wrappers over :mod:`declip_lite.viz`.

Each callback is a pure function of the controls' values that returns a matplotlib Figure. The
widget renders that figure to PNG, closes it and shows the PNG in an ``Image`` widget, so a
slider redraws under any matplotlib backend and never leaves a figure open. ``explore`` shows
one driven state as a plain picture above the live widget: a saved, reopened or
papermill-executed notebook keeps that picture even when the widget itself is gone.
"""
import io

import matplotlib.pyplot as plt

from . import viz

LABEL_STYLE = {"description_width": "initial"}  # the whole label, never "temperat..."


def png(fig, dpi=90):
    """The figure as PNG bytes and its width in pixels; the figure is closed (no figure leak)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    data = buffer.getvalue()
    return data, int.from_bytes(data[16:20], "big")  # the width field of the PNG header


def interactive_picture(callback, **controls):
    """A VBox of ``controls`` above an Image that shows ``callback(**values)`` and follows every change."""
    import ipywidgets as w

    picture = w.Image(format="png")

    def redraw(_=None):
        picture.value, width = png(callback(**{name: c.value for name, c in controls.items()}))
        picture.layout.width = f"{width}px"  # its own size, not stretched to the cell

    for control in controls.values():
        control.style = LABEL_STYLE
        control.layout = w.Layout(width="420px")
        control.observe(redraw, names="value")
    redraw()
    box = w.VBox([*controls.values(), picture])
    box.add_class("declip-widget")
    return box


def explore(widget, callback, **values):
    """Display ``callback(**values)`` as a static picture, then the live ``widget``; return that figure."""
    from IPython.display import Image, display

    fig = callback(**values)
    data, width = png(fig)
    display(Image(data, width=width))
    display(widget)
    return fig


def temperature_widget(similarities, labels=None):
    """A log-slider over the temperature of the softmax of image-text similarities."""
    import ipywidgets as w

    def callback(temperature):
        return viz.softmax_at_temperature(similarities, temperature, labels)

    slider = w.FloatLogSlider(value=0.07, base=10, min=-2.3, max=0, step=0.05, description="temperature τ")
    return interactive_picture(callback, temperature=slider), callback


def neighbour_widget(queries, similarities, age, entries):
    """Browse a query caption's nearest queue entries, among only the ``queue_size`` newest.

    similarities: (Q, N) query x queue; age: (N,) 0 = oldest entry; entries: N captions."""
    import ipywidgets as w

    def callback(query, queue_size):  # the 5 nearest among the newest queue_size (fewer if it holds fewer)
        recent = age >= len(age) - queue_size
        sims = similarities[query].masked_fill(~recent, -2.0)
        top = sims.topk(min(5, queue_size))
        return viz.neighbour_bars(queries[query], [entries[i] for i in top.indices.tolist()],
                                  top.values.tolist())

    n = len(age)
    return interactive_picture(callback,
                               query=w.IntSlider(0, 0, len(queries) - 1, description="query caption"),
                               queue_size=w.IntSlider(n // 4, 1, n, step=max(1, n // 32),
                                                      description="queue size")), callback
