"""Video runs checkpoint and resume: a run stopped (at its end or killed mid-way) and
resumed with resume=true ends bit for bit where an uninterrupted run ends."""

import pytest
import torch

from torchrl_vta.video import (
    VideoCheckpoints,
    load_data,
    make_variant,
    run_video_experiment,
    train_video_model,
    validate_config,
)


def _config(tmp_path, **run):
    return validate_config({
        "model": {"name": "agent", "size": "tiny", "init_size": 2, "seq_size": 6,
                  "rssm": {"boundary_kind": "surprise"}},
        "dataset": {"name": "balls", "num_sequences": 6, "eval_sequences": 2, "seq_len": 12,
                    "options": {"num_balls": 1}},
        "eval": {"strip_sequences": 2, "generate_sequences": 1, "jumpy_steps": 2},
        "batch_size": 2, "data_dir": str(tmp_path / "data"), **run,
    })


def _train(config, run_dir, *, fail_at=None):
    """``train_video_model`` as ``run_video_experiment`` calls it; ``fail_at`` kills the
    run (an exception out of the loss) at that step."""
    torch.manual_seed(config.run.seed)
    train, _ = load_data(config.dataset, config.run.data_dir)
    variant = make_variant(config)
    checkpoints = VideoCheckpoints(run_dir)
    resume_from = checkpoints.start(config)
    if fail_at is not None:
        losses, calls = variant.losses, [resume_from["step"] if resume_from else 0]

        def dying(batch):
            if calls[0] == fail_at:
                raise KeyboardInterrupt
            calls[0] += 1
            return losses(batch)

        variant.losses = dying
    report = train_video_model(variant, train["pixels"], config, checkpoints=checkpoints,
                               resume_from=resume_from)
    return variant.loss.state_dict(), report


def _assert_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("how", ["stopped", "killed"])
def test_a_resumed_run_ends_bit_for_bit_where_an_uninterrupted_one_ends(tmp_path, how):
    straight, report = _train(_config(tmp_path, steps=6), tmp_path / "straight")
    assert report["steps_done"] == 6
    run_dir = tmp_path / "interrupted"
    if how == "stopped":  # a shorter run, then more steps on resume
        _train(_config(tmp_path, steps=3), run_dir)
    else:  # a checkpoint every step (a tiny period), killed in step 4
        with pytest.raises(KeyboardInterrupt):
            _train(_config(tmp_path, steps=6, checkpoint_every_min=1e-9), run_dir, fail_at=4)
    assert VideoCheckpoints(run_dir).start(_config(tmp_path, steps=6, resume=True))["step"] \
        == (3 if how == "stopped" else 4)
    resumed, report = _train(_config(tmp_path, steps=6, resume=True), run_dir)
    assert report["steps_done"] == 6
    _assert_equal(straight, resumed)
    # The segment policy's running statistics travel too (part of the model's state).
    assert any("surprise_histogram" in key for key in resumed)
    assert resumed[next(k for k in resumed if "surprise_histogram" in k)].sum() > 0


def test_resume_refuses_other_options_and_a_new_run_refuses_an_old_directory(tmp_path):
    _train(_config(tmp_path, steps=2), tmp_path / "run")
    with pytest.raises(ValueError, match="add resume=true to continue it"):
        VideoCheckpoints(tmp_path / "run").start(_config(tmp_path, steps=4))
    with pytest.raises(ValueError, match=r"batch_size \(2 in the run, 4 given\)"):
        VideoCheckpoints(tmp_path / "run").start(_config(tmp_path, steps=4, resume=True,
                                                         batch_size=4))
    # Safe keys change freely: more steps, another budget, the evaluation.
    config = _config(tmp_path, steps=9, resume=True, time_budget_min=5.0)
    config.eval.batch_size = 3
    assert VideoCheckpoints(tmp_path / "run").start(config)["step"] == 2
    with pytest.raises(ValueError, match="checkpoint_every_min must be > 0"):
        _config(tmp_path, checkpoint_every_min=0)


def test_the_experiment_resumes_and_counts_the_time_budget_over_sessions(tmp_path):
    first = run_video_experiment(_config(tmp_path, steps=2), tmp_path / "run")
    assert (tmp_path / "run" / "checkpoints" / "LATEST").is_file()
    metrics = run_video_experiment(_config(tmp_path, steps=4, resume=True), tmp_path / "run")
    assert metrics["steps_done"] == 4
    assert metrics["train_time_s"] > first["train_time_s"]
    # A budget already spent trains no further step.
    again = run_video_experiment(_config(tmp_path, steps=8, resume=True, time_budget_min=1e-6),
                                 tmp_path / "run")
    assert again["steps_done"] == 4
