"""End-to-end smoke runs and option checking of examples/vta_video.py."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from torchrl_vta.video import validate_config
from torchrl_vta.video.variants import make_variant

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "vta_video.py"
CONFIG_DIR = str(ROOT / "configs" / "video")


def _compose(*overrides):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        return compose(config_name="vta_video", overrides=list(overrides))


def _run(tmp_path: Path, *overrides) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "preset=smoke", f"hydra.run.dir={tmp_path / 'run'}",
         f"data_dir={tmp_path / 'data'}", *overrides],
        capture_output=True, text=True, timeout=110, cwd=ROOT,
    )


@pytest.mark.parametrize("overrides", [("dataset=balls", "model=original"),
                                       ("dataset=maze", "model=agent")])
def test_smoke_run_writes_outputs(tmp_path, overrides):
    result = _run(tmp_path, *overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    for name in ("metrics.json", "boundary_strip.png", "generation_full.png",
                 "generation_jumpy.png", "model.pt"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["model"] == overrides[1].split("=")[1]
    assert metrics["steps_done"] == 3
    for name in ("forcing_on", "forcing_off"):
        report = metrics[name]
        assert set(report["f1"]) == set(report["periodic_f1"]) == {"0", "1", "2"}
        for key in ("precision", "recall", "auc", "surprise_auc", "boundary_rate", "event_rate",
                    "mean_segment_length", "table", "periodic_table"):
            assert key in report
        # Every free READ is counted once in the offset histogram.
        free_reads = report["table"][0]["tp"] + report["table"][0]["fp"]
        assert sum(report["offsets"].values()) == free_reads
        assert set(report["score_profile"]) == {"-3", "-2", "-1", "0", "1", "2", "3"}
    assert "outputs in" in result.stderr + result.stdout
    if metrics["model"] == "original":
        # A saved model re-evaluated with steps=0 gives the same numbers (evaluation is noise-free).
        again = _run(tmp_path / "again", *overrides, "steps=0", f"init_from={run / 'model.pt'}",
                     f"data_dir={tmp_path / 'data'}")
        assert again.returncode == 0, again.stderr[-3000:]
        reevaluated = json.loads((tmp_path / "again" / "run" / "metrics.json").read_text())
        assert reevaluated["steps_done"] == 0
        for name in ("forcing_on", "forcing_off"):
            for key in ("f1", "auc", "surprise_auc", "boundary_rate"):
                assert reevaluated[name][key] == metrics[name][key], (name, key)


@pytest.mark.parametrize("overrides, message", [
    (("dataset=ballz",), "Could not find 'dataset/ballz'"),
    (("model.max_seg_len=-1",), "model.max_seg_len must be >= 1"),
])
def test_bad_options_fail_before_any_work(tmp_path, overrides, message):
    result = _run(tmp_path, *overrides)
    assert result.returncode != 0
    assert message in result.stderr
    assert not (tmp_path / "data").exists()


def test_validation_names_the_bad_option():
    config = validate_config(_compose("preset=smoke"))
    assert config.window == 10 and config.model.sizes() == (16, 8, 2)
    resumed = validate_config(_compose("resume=true", "checkpoint_every_min=null")).run
    assert resumed.resume and resumed.checkpoint_every_min is None
    one_ball = validate_config(_compose("dataset=one_ball")).dataset
    assert one_ball.name == "balls" and one_ball.options["num_balls"] == 1
    cases = [
        (("model.size=huge",), "model.size must be one of"),
        (("model=agent", "+model.rssm.max_seg_lenn=3"), r"model.rssm has unknown option\(s\) \['max_seg_lenn'\]"),
        (("model=agent", "+model.loss.boundary_kll=x"), r"model.loss has unknown option"),
        (("model=agent", "+model.encoder.cnn_dpth=4"), r"model.encoder has unknown option"),
        (("model=agent", "+model.decoder.in_features=4"), r"model.decoder must not set \['in_features'\]"),
        (("model=agent", "+model.rssm.levels=3"), r"model.rssm must not set \['levels'\].*model.levels"),
        (("steps=-2",), "steps must be >= 0"),
        (("init_from=no/such/model.pt",), "init_from='no/such/model.pt' is not a file"),
        (("optim.lr=0",), "optim.lr must be > 0"),
        (("temperature.final=0",), "final must be > 0"),
        (("dataset.image_size=64",), "dataset.image_size must be 32"),
        (("model.seq_size=40",), r"dataset.seq_len \(30\) must be >= the model window"),
        (("+eval.tolerance=1",), "invalid option in 'eval'"),
        (("eval.split=test",), "eval.split must be 'heldout' or 'train'"),
        (("checkpoint_every_min=-1",), "checkpoint_every_min must be > 0"),
    ]
    for overrides, message in cases:
        with pytest.raises(ValueError, match=message):
            validate_config(_compose(*overrides))
    with pytest.raises(Exception, match="max_seg_lenn"):
        _compose("model.max_seg_lenn=3")


def test_agent_encoder_and_decoder_options_reach_the_model():
    config = validate_config(_compose("model=agent", "model.size=tiny",
                                      "+model.encoder.cnn_mults=[2,2,2]", "+model.decoder.cnn_depth=3"))
    model = make_variant(config).world_model
    # Three stride-2 stages on 32x32 frames leave a 4x4 map; the decoder mirrors the stages.
    assert model.encoder.out_features == 4 * 2 * 4 * 4
    assert model.decoder.cnn.projection.out_features == 3 * 2 * 4 * 4
