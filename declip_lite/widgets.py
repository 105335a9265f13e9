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
