"""The instructor's path: a wheel built from the repository installs into a fresh virtualenv, layered
on the test environment's packages (torch and the rest, nothing downloaded), and works outside the
checkout: it builds DeCLIP, trains CLIP for 20 steps, and a notebook helper that needs the
repository's results/ says so by name."""
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig

ROOT = pathlib.Path(__file__).resolve().parents[1]

OUTSIDE = """
import pathlib, sys
import declip_lite
from declip_lite import experiments, make_objective, model_config, notebook, shapecaps_tokenizer

where = pathlib.Path(declip_lite.__file__).resolve()
assert where.is_relative_to(pathlib.Path(sys.prefix).resolve()), where  # the wheel's copy, not the checkout
tokenizer = shapecaps_tokenizer()
config = model_config("rn-tiny", vocab_size=tokenizer.vocab_size)
declip = make_objective("declip", config, tokenizer.vocab_size)
run = experiments.train("clip", "smoke", 0, runs_dir="runs", device="cpu", steps=20, batch_size=32, eval_n=64)
assert run.trainer.step == 20 and 0 <= run.record.zero_shot["mean"] <= 1
try:
    notebook.setup(SMOKE=False, SEED=0, DEVICE="cpu", RESULTS="auto", SHIPPED="../results")
except notebook.ParameterError as e:
    print("refused:", e)
"""


def test_a_wheel_installs_into_a_fresh_virtualenv_and_trains_outside_the_checkout(tmp_path):
    source, wheels, venv, work = (tmp_path / d for d in ("source", "wheels", "venv", "work"))
    source.mkdir()
    for part in ("pyproject.toml", "README.md", "declip_lite"):  # a copy: setuptools writes build/ beside it
        (shutil.copytree if (ROOT / part).is_dir() else shutil.copy)(ROOT / part, source / part)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",  # this
                    "-w", str(wheels), str(source)], check=True, capture_output=True)  # env's setuptools
    (wheel,) = wheels.glob("declip_lite-*.whl")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    ask = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = pathlib.Path(subprocess.run([str(python), "-c", ask], check=True, capture_output=True,
                                       text=True).stdout.strip())
    (site / "layered.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # a path: its .pth unread
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-compile",
                    "--target", str(site), str(wheel)], check=True, capture_output=True)
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(python), "-c", OUTSIDE], cwd=work, env={**env, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "refused: parameter SHIPPED='../results' is not a folder" in done.stdout  # says what it needs
    assert "the repository's results/ folder" in done.stdout
    assert list((work / "runs").glob("clip-s0-*.json"))  # the run's record, written where it ran
