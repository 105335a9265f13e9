"""Thin ipywidgets wrappers over :mod:`declip_lite.viz`. Each callback is a pure function of its
arguments; ``drive`` calls it once programmatically, so a headless (papermill) run tests it."""
import matplotlib.pyplot as plt

from . import viz


def drive(callback, **values):
    """Call a widget's callback once with ``values`` and return its figure (closed for display)."""
    fig = callback(**values)
    plt.close(fig)
    return fig


def temperature_widget(similarities, labels=None):
    """A log-slider over the temperature of the softmax of image-text similarities."""
    import ipywidgets as w

    def callback(temperature):
        return viz.softmax_at_temperature(similarities, temperature, labels)

    slider = w.FloatLogSlider(value=0.07, base=10, min=-2.3, max=0, step=0.05, description="temperature")
    return w.interactive(callback, temperature=slider), callback


def neighbour_widget(queries, similarities, age, entries):
    """Browse a query caption's nearest queue entries, among only the ``queue_size`` newest.

    similarities: (Q, N) query x queue; age: (N,) 0 = oldest entry; entries: N captions."""
    import ipywidgets as w

    def callback(query, queue_size):
        recent = age >= len(age) - queue_size
        sims = similarities[query].masked_fill(~recent, -2.0)
        top = sims.topk(5)
        return viz.neighbour_bars(queries[query], [entries[i] for i in top.indices.tolist()], top.values.tolist())

    n = len(age)
    return w.interactive(callback, query=w.IntSlider(0, 0, len(queries) - 1),
                         queue_size=w.IntSlider(n // 4, 1, n, step=max(1, n // 32))), callback
