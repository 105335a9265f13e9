"""Every numbered notebook, executed by papermill in smoke mode (the executed copy, failing or not,
stays in runs/tests/), but those that test_browser runs in JupyterLab where it can and 00, which the
gpu check runs; and the helpers the notebooks call: parameter checks and widgets."""
import importlib.util
import json
import pathlib

import matplotlib.pyplot as plt
import pytest
import test_browser
import torch

from declip_lite import notebook
from declip_lite.notebook import ParameterError
from declip_lite.widgets import temperature_widget

ROOT = pathlib.Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "notebooks" / "run.py")
run_notebooks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_notebooks)


IN_BROWSER = set() if test_browser.missing() else test_browser.EXECUTED  # run once, there, where it can
IN_GPU_CHECK = {"00_the_data"}  # bench/gpu_check.sh runs it in smoke mode on a CPU, in test_reproduce_command


@pytest.mark.timeout(900)
@pytest.mark.parametrize("notebook", [p for p in run_notebooks.notebooks()
                                      if p.stem not in IN_BROWSER | IN_GPU_CHECK], ids=lambda p: p.stem)
def test_notebook_runs_in_smoke_mode(notebook, tmp_path, shared_runs):
    import papermill

    params = {"SMOKE": True, "SEED": 0, "DEVICE": "cpu", "RUNS_DIR": str(shared_runs),
              "FIG_DIR": str(tmp_path / "figures")}
    declared = papermill.inspect_notebook(str(notebook))  # setup refuses a parameter the notebook lacks
    run_notebooks.execute(notebook, ROOT / "runs" / "tests",
                          {k: v for k, v in params.items() if k in declared}, timeout=600)


@pytest.mark.parametrize("parameters, named", [
    ({"SMOKE": "false"}, "SMOKE"),  # papermill -p SMOKE false: a string, which Python reads as true
    ({"SMOKE": 1}, "SMOKE"),
    ({"SEED": "x"}, "SEED"),
    ({"SEED": True}, "SEED"),
    ({"SEED": -1}, "SEED"),
    ({"DEVICE": "gpu"}, "DEVICE"),
    ({"DEVICE": "cuda:0" if not torch.cuda.is_available() else "tpu"}, "DEVICE"),
    ({"JOBS": 0}, "JOBS"),
])
def test_a_bad_notebook_parameter_is_named(parameters, named):
    with pytest.raises(ParameterError, match=f"parameter {named}"):
        notebook.setup(**{"SMOKE": True, "SEED": 0, "DEVICE": "cpu", **parameters})


def test_good_notebook_parameters_give_the_device_and_the_figure_folder(tmp_path):
    assert notebook.setup(tmp_path / "figs", SMOKE=False, SEED=3, DEVICE="cpu", JOBS=2) == torch.device("cpu")
    assert (tmp_path / "figs").is_dir()


def test_a_widget_redraws_on_every_move_and_leaves_no_figure_open():
    plt.close("all")
    similarities = torch.randn(3, 5)
    widget, callback = temperature_widget(similarities)
    slider, picture = widget.children
    seen = {picture.value}
    for temperature in torch.logspace(-2, 0, 25).tolist():
        slider.value = temperature
        seen.add(picture.value)
    assert len(seen) >= 20  # a new picture for (almost) every position
    assert plt.get_fignums() == []  # more than 20 open figures would make matplotlib warn in the widget
    assert "description_width" in slider.style.keys and slider.style.description_width == "initial"


def test_every_notebook_states_the_costs_measured_in_results():
    costs = json.loads(run_notebooks.COSTS.read_text())
    for path in run_notebooks.notebooks():
        first = "".join(json.loads(path.read_text())["cells"][0]["source"])
        assert first.endswith(run_notebooks.cost_paragraph(costs, path.stem)), \
            (f"{path.name}: its cost line differs from {run_notebooks.COSTS.name}; "
             f"run notebooks/run.py --write-costs")


def test_the_setup_helpers_pick_a_preset_by_device_and_one_small_data_regime_everywhere():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert [notebook.by_device(False, d) for d in (cpu, cuda)] == ["cpu", "gpu"]
    assert notebook.by_device(True, cuda) == "smoke" and notebook.by_device(False, cpu, "gpu") == "gpu"
    assert notebook.small_data(False) == ("cpu", {"pairs": 2000, "steps": 1200})
    assert notebook.small_data(True)[0] == "smoke"


@pytest.mark.parametrize("name, words", [("dual_encoder", ["image tower", "text tower", "diagonal"]),
                                         ("multi_view", ["T_aug", "4 CLIP losses"]),
                                         ("nn_queue", ["look up", "enqueue", "exclude_self"]),
                                         ("filip_matching", ["patch 1", "max over tokens"])])
def test_each_diagram_draws_the_parts_its_notebook_names(name, words):
    from declip_lite import diagrams

    fig = getattr(diagrams, name)()
    text = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert all(w in text for w in words), (name, text)
    plt.close(fig)


def test_the_neighbour_widget_shows_only_entries_inside_the_queue():
    from declip_lite.widgets import neighbour_widget

    sims, age = torch.rand(2, 40, generator=torch.Generator().manual_seed(0)), torch.arange(40)
    _, show = neighbour_widget(["a query", "another"], sims, age, [f"entry {i}" for i in range(40)])
    newest = show(1, 1)  # a queue of one: the newest entry alone, never an entry outside it
    assert [t.get_text() for t in newest.axes[0].get_yticklabels()] == ["entry 39"]
    whole = show(1, 40)
    assert len(whole.axes[0].patches) == 5 and min(p.get_width() for p in whole.axes[0].patches) > 0
    plt.close("all")


def test_an_embedding_map_draws_a_colour_class_in_its_own_colour_and_other_classes_from_a_palette():
    from matplotlib.colors import to_rgb

    from declip_lite import viz

    points, labels = torch.rand(12, 2).numpy(), torch.arange(12) % 3
    by_colour = viz.embedding_maps([points], labels, ["red", "yellow", "blue"], ["by colour"])
    by_shape = viz.embedding_maps([points], labels, ["circle", "square", "star"], ["by shape"])
    drawn = lambda fig: [tuple(c.get_facecolor()[0][:3]) for c in fig.axes[0].collections]  # noqa: E731
    assert drawn(by_colour) == [to_rgb(c) for c in ("red", "yellow", "blue")]
    assert len(set(drawn(by_shape))) == 3 and to_rgb("red") not in drawn(by_shape)
    plt.close("all")


def test_a_margin_is_positive_exactly_when_its_assertion_passes():
    source = ("if not SMOKE:\n    assert a > b + 0.2 and 0 <= c < 1, a\nelse:\n    assert a < -9\n"
              "for k in range(2):\n    assert k < 0\nassert b == b and t >= 0.5\n")
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        a, b, c = (torch.rand(3, generator=generator) * 2 - 0.5).tolist()
        space = {"SMOKE": False, "a": a, "b": b, "c": c, "t": torch.tensor(c)}
        found = notebook.assertion_margins(source, space)
        assert [m["assert"] for m in found] == ["a > b + 0.2", "0 <= c", "c < 1", "t >= 0.5"]
        expected = [a - (b + 0.2), c, 1 - c, c - 0.5]  # brute force: how far each side is from the edge
        assert all(abs(m["margin"] - e) < 1e-6 for m, e in zip(found, expected))
        passes = [a > b + 0.2, 0 <= c, c < 1, c >= 0.5]
        assert [m["margin"] > 0 for m in found] == passes  # random floats never sit on an edge


def test_make_run_margins_measure_the_last_check_cell_and_keep_the_smallest_over_reruns(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("SMOKE = True\nGAP = 0.1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("assert 1 < 2"),
        nbformat.v4.new_code_cell("gap = GAP\nassert gap < 0.5, gap"),
        nbformat.v4.new_markdown_cell("## Conclusion")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "99_check.ipynb"
    nbformat.write(nb, path)
    log = tmp_path / "margins.json"
    for gap in (0.1, 0.3):
        found = run_notebooks.execute(path, tmp_path / "out", {"SMOKE": False, "GAP": gap}, margins=True)
        margin = pytest.approx(0.5 - gap)
        assert found == [{"assert": "gap < 0.5", "left": gap, "right": 0.5, "margin": margin}]
        run_notebooks.add_margins(log, {path.stem: found}, smoke=False)
    data = json.loads(log.read_text())
    assert len(data["reruns"]) == 2 and data["full"]["reruns"] == 2 and "smoke" not in data
    assert data["full"]["smallest"] == {"99_check": {"gap < 0.5": pytest.approx(0.2)}}


def test_notebook_07s_what_you_should_see_quotes_the_cpu_json_it_names():
    found = json.loads((ROOT / "results" / "cpu" / "notebooks" / "07_cpu.json").read_text())
    cells = json.loads((ROOT / "notebooks" / "07_declip_findings.ipynb").read_text())["cells"]
    text = " ".join(next("".join(c["source"]) for c in cells
                         if "".join(c["source"]).startswith("## What you should see")).split())
    text = text.replace("−", "-")  # the prose's minus signs
    quoted = [*found["minus_clip"].values(), *found["rung_to_rung"].values(), *found["curve_ends"].values(),
              found["declip_minus_clip_at_long"]]
    for c in quoted:
        assert f"{c['difference']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}]" in text, c
    assert f"about {found['data_multiple']:.1f}× in `07_cpu.json`" in text
