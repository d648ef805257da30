"""Learning-curve plots read the recipe's CSV logs the way a resumed run wrote them."""

from pathlib import Path

import numpy as np
import pytest

from torchrl_vta.viz import plot_learning_curves, read_scalar_log

pytest.importorskip("matplotlib")
imageio = pytest.importorskip("imageio.v2")


def write_run(root: Path, scalars: dict[str, str]) -> Path:
    for name, text in scalars.items():
        path = root / "logs" / "vta_dreamer" / "scalars" / f"{name}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_resume_rewind_drops_the_killed_runs_tail(tmp_path):
    # Killed at 15.5k after a checkpoint at 14k; the resumed run logs from 14k again.
    log = tmp_path / "episode_return.csv"
    log.write_text("13000,1\n14000,2\n15000,3\n15500,4\n14100,5\n15200,6\n")
    steps, values = read_scalar_log(log)
    assert steps.tolist() == [13000, 14000, 14100, 15200]
    assert values.tolist() == [1, 2, 5, 6]
    assert np.all(np.diff(steps) > 0)


def test_ties_are_kept_for_counting_and_still_rewound(tmp_path):
    # Two episodes ended in the batch at 14000; the run was killed at 15.5k and resumed
    # from its checkpoint at 14000, so it logs 14100 next.
    log = tmp_path / "episode_return.csv"
    log.write_text("13000,1\n14000,2\n14000,7\n15000,3\n15500,4\n14100,5\n14100,6\n")
    steps, values = read_scalar_log(log, keep_ties=True)
    assert steps.tolist() == [13000, 14000, 14000, 14100, 14100]
    assert values.tolist() == [1, 2, 7, 5, 6]
    # The default (curves) keeps one point per step.
    steps, values = read_scalar_log(log)
    assert steps.tolist() == [13000, 14000, 14100] and values.tolist() == [1, 7, 6]


def test_malformed_line_names_file_and_line(tmp_path):
    log = tmp_path / "return.csv"
    log.write_text("2000,1\nnot a number\n")
    with pytest.raises(ValueError, match=r"return.csv:2"):
        read_scalar_log(log)


def test_two_runs_give_a_png_with_both_curves(tmp_path):
    episodes = "".join(f"{100 * i},{i}\n" for i in range(40))
    flat = write_run(tmp_path / "flat", {"eval/return": "2000,10\n4000,30\n", "train/episode_return": episodes})
    vta = write_run(tmp_path / "vta", {"eval/return": "2000,20\n4000,25\n", "train/episode_return": episodes})
    out = plot_learning_curves({"flat": flat, "vta": vta}, tmp_path / "curves.png",
                               references={"random": 5.0}, title="test")
    image = imageio.imread(out)
    assert image.ndim == 3 and image.shape[1] > 2 * image.shape[0]  # two panels side by side
    red = (image[..., 0] > 180) & (image[..., 1] < 80) & (image[..., 2] < 80)
    blue = (image[..., 2] > 150) & (image[..., 0] < 80)
    assert red.sum() > 50 and blue.sum() > 50  # the first two runs' colours are drawn


def test_more_runs_than_colours_are_all_drawn(tmp_path):
    runs = {f"run{i}": write_run(tmp_path / f"run{i}", {"eval/return": "2000,1\n4000,2\n"})
            for i in range(7)}
    # Only the seventh run (past the six colours) logged this scalar: it must still be drawn.
    write_run(runs["run6"], {"train/loss_reco": "2000,5\n4000,3\n"})
    out = plot_learning_curves(runs, tmp_path / "many.png", scalars=["train/loss_reco"])
    assert out.exists()


def test_unknown_scalar_and_empty_run_fail_clearly(tmp_path):
    run = write_run(tmp_path / "run", {"eval/return": "2000,10\n"})
    with pytest.raises(KeyError, match="eval/return"):
        plot_learning_curves({"run": run}, tmp_path / "x.png", scalars=["eval/reward"])
    only_eval = plot_learning_curves({"run": run}, tmp_path / "eval_only.png")  # no episode yet
    assert imageio.imread(only_eval).shape[1] < 1.5 * imageio.imread(only_eval).shape[0]  # one panel
    with pytest.raises(FileNotFoundError, match="logger.backend=csv"):
        plot_learning_curves({"empty": tmp_path / "nothing"}, tmp_path / "x.png")


def load_plot_script():
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "examples" / "plot_learning_curves.py"
    spec = importlib.util.spec_from_file_location("plot_learning_curves_example", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_writes_png_and_rejects_bad_arguments(tmp_path, capsys):
    script = load_plot_script()
    run = write_run(tmp_path / "run", {"eval/return": "2000,10\n4000,30\n"})
    out = tmp_path / "curves.png"
    script.main([f"flat={run}", "--scalar", "eval/return", "--reference", "random=5",
                 "--mark", "resumed=3000", "--out", str(out)])
    assert out.exists()
    with pytest.raises(SystemExit):
        script.main([str(run)])  # no LABEL=
    assert "LABEL=OUTPUT_DIR" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.main([f"flat={run}", "--reference", "random=lots"])
    assert "need a number" in capsys.readouterr().err
