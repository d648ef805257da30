"""The benchmark scripts run end to end and write what their READMEs say (no timing asserted)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def _smoke_video_run(tmp_path, *overrides: str) -> Path:
    """A ``vta_video.py preset=smoke`` run directory (``model=agent``) with ``overrides``."""
    run = tmp_path / "run"
    subprocess.run([sys.executable, str(ROOT / "examples" / "vta_video.py"), "preset=smoke",
                    "model=agent", *overrides, f"hydra.run.dir={run}",
                    f"data_dir={tmp_path / 'data'}"], check=True, capture_output=True, cwd=ROOT,
                   timeout=300)
    return run


def test_bench_update_times_every_model_and_writes_ratios(tmp_path):
    out = tmp_path / "bench.json"
    _run("bench_update.py", "--sizes", "size1m", "--batches", "2x4", "--warmup", "0",
         "--reps", "1", "--threads", "1", "--out", str(out))
    report = json.loads(out.read_text())
    assert report["meta"]["threads"] == 1
    assert [(row["batch"], row["part"]) for row in report["rows"]] == [
        ("2x4", "world_model"), ("2x4", "learner")]
    for row in report["rows"]:
        for model in ("torchrl", "ours_l1", "ours_l2", "ours_l3"):
            assert row[f"{model}_s"] > 0
        assert row["l1_vs_torchrl"] == row["ours_l1_s"] / row["torchrl_s"]
        assert row["l2_vs_l1"] == row["ours_l2_s"] / row["ours_l1_s"]
        assert row["l3_vs_l1"] == row["ours_l3_s"] / row["ours_l1_s"]


def test_loop_variants_compute_the_same_losses_as_the_library(tmp_path):
    # The script asserts that every candidate loop gives the library's loss
    # (same seed) before timing it; a candidate that changed the maths fails here.
    out = tmp_path / "variants.json"
    _run("loop_variants.py", "--preset", "test", "--batch", "2x4", "--warmup", "0",
         "--reps", "1", "--threads", "1", "--out", str(out))
    rows = json.loads(out.read_text())["rows"]
    assert {row["levels"] for row in rows} == {1, 2}
    assert len({row["change"] for row in rows}) == 4
    assert all(row["library_s"] > 0 and row["candidate_s"] > 0 for row in rows)


def test_boundary_quality_runs_every_model_kind_and_world(tmp_path):
    # Two optimiser steps of the smoke preset per run: checks the wiring of the model
    # kinds and worlds into vta_video.py and the table, not the quality.
    _run("boundary_quality.py", "--datasets", "one_ball", "maze", "--models", "original",
         "agent_surprise", "agent_learned_surprise", "--budget-min", "1", "--max-steps", "2",
         "--common", "preset=smoke", "--out", str(tmp_path))
    table = (tmp_path / "table.md").read_text().splitlines()
    labels = [line.split("|")[1].strip() for line in table[2:]]
    assert labels == [f"{world} {model}" for world in ("one_ball", "maze")
                      for model in ("original", "agent_surprise", "agent_learned_surprise")
                      for _ in ("on", "off")]
    for world in ("one_ball", "maze"):
        metrics = json.loads((tmp_path / f"{world}_agent_surprise" / "metrics.json").read_text())
        assert metrics["config"]["model"]["rssm"]["boundary_kind"] == "surprise"


def test_surprise_trace_records_the_statistics_of_a_training_run(tmp_path):
    out = tmp_path / "trace.json"
    _run("surprise_trace.py", str(out), "--every", "1", "--", "preset=smoke",
         "dataset=maze", "model=agent", "+model.rssm.boundary_kind=surprise",
         f"hydra.run.dir={tmp_path / 'run'}", f"data_dir={tmp_path / 'data'}")
    records = json.loads(out.read_text())["records"]
    # preset=smoke trains 3 steps; evaluation (eval mode) adds no record.
    assert [record["update"] for record in records] == [0, 1, 2]
    for record in records:
        assert len(record["histogram_log1p"]) == 128 and record["scale_nats"] > 0
        assert abs(sum(record["histogram_log1p"]) - 1.0) < 1e-4


def test_surprise_trace_follows_every_abstract_level(tmp_path):
    out = tmp_path / "trace.json"
    _run("surprise_trace.py", str(out), "--every", "1", "--", "preset=smoke",
         "dataset=nested_one_ball", "model=agent", "model.levels=3",
         "+model.rssm.boundary_kind=surprise", f"hydra.run.dir={tmp_path / 'run'}",
         f"data_dir={tmp_path / 'data'}")
    records = json.loads(out.read_text())["records"]
    for level in (1, 2):
        mine = [record for record in records if record["level"] == level]
        assert [record["update"] for record in mine] == [0, 1, 2]
        for record in mine:
            assert record["above_scale"] is None or 0 <= record["above_scale"] <= 1


def test_distributed_throughput_measures_collection_and_a_two_rank_learner(tmp_path):
    out = tmp_path / "throughput.json"
    _run("distributed_throughput.py", "run", "--backends", "local", "--batches", "1",
         "--updates", "1", "--warmup", "0", "--out", str(out), "--", "model=tiny",
         "collector.frames_per_batch=10", "env.options.image_size=16")
    report = json.loads(out.read_text())
    assert [(row["backend"], row["workers"]) for row in report["collect"]] == [
        ("local", 1), ("local", 2)]
    assert [row["ranks"] for row in report["learn"]] == [1, 2]
    for row in report["collect"]:
        assert row["frames"] == 10 * row["workers"] and row["env_steps_per_s"] > 0
    for row in report["learn"]:
        batch, seq_len = row["batch_per_rank"]
        expected = row["updates_per_s"] * row["ranks"] * batch * seq_len
        assert abs(row["replayed_steps_per_s"] - expected) <= 1e-9 * expected


def test_traffic_prediction_scores_both_models_per_horizon(tmp_path):
    out = tmp_path / "traffic.json"
    _run("traffic_prediction.py", "--seeds", "0", "--updates", "2", "--preset", "test",
         "--train-sequences", "2", "--train-length", "40", "--test-sequences", "2",
         "--context", "5", "--horizon", "5", "--samples", "3", "--eval-every", "1",
         "--out", str(out))
    seed = json.loads(out.read_text())["seeds"][0]
    for model in ("vta_mean", "baseline"):
        assert set(seed[model]) == {"ade", "fde", "existence_f1", "filter_position_error",
                                    "filter_existence_f1"}
        assert list(seed[model]["fde"]) == ["1", "5"]
        curve = seed["curves"][model.removesuffix("_mean")]
        assert [row["update"] for row in curve] == [0, 1, 2]
        assert set(curve[-1]) == {"update", "fde_h1", "fde_h5", "existence_f1_h1",
                                  "filter_position_error", "filter_existence_f1"}
    # The last point of a curve scores the trained model like the final report.
    assert seed["curves"]["baseline"][-1]["fde_h5"] == seed["baseline"]["fde"]["5"]
    assert set(seed["constant_velocity"]) == {"ade", "fde"}
    assert set(seed["last_set_kept"]["existence_f1"]) == {"1", "5"}
    # Scoring along the way does not change what is trained.
    _run("traffic_prediction.py", "--seeds", "0", "--updates", "2", "--preset", "test",
         "--train-sequences", "2", "--train-length", "40", "--test-sequences", "2",
         "--context", "5", "--horizon", "5", "--samples", "3", "--out", str(out))
    plain = json.loads(out.read_text())["seeds"][0]
    assert "curves" not in plain
    assert plain["vta_mean"] == seed["vta_mean"] and plain["baseline"] == seed["baseline"]
    # Each model draws its own windows: training one alone gives the same model.
    _run("traffic_prediction.py", "--seeds", "0", "--updates", "2", "--preset", "test",
         "--train-sequences", "2", "--train-length", "40", "--test-sequences", "2",
         "--context", "5", "--horizon", "5", "--samples", "3", "--models", "baseline",
         "--out", str(out))
    alone = json.loads(out.read_text())["seeds"][0]
    assert "vta_mean" not in alone and alone["baseline"] == seed["baseline"]
    # Best-of-N never scores worse than the mean of the same samples' ... own best sample.
    assert all(seed["vta_best_of_n"]["fde"][h] >= 0 for h in ("1", "5"))
    assert set(seed["boundaries"]) >= {"f1_tau0", "f1_tau1", "f1_tau2", "read_rate", "event_rate"}


def test_set_capacity_reports_the_position_error_per_width(tmp_path):
    out = tmp_path / "capacity.json"
    _run("set_capacity.py", "--units", "8", "--updates", "1", "--batch", "4", "--out", str(out))
    rows = json.loads(out.read_text())["rows"]
    assert [(row["units"], row["update"]) for row in rows] == [(8, 0)]
    assert rows[0]["position_error"] > 0
    assert rows[0]["heldout_position_error"] > 0 and 0 <= rows[0]["heldout_existence_f1"] <= 1
    _run("set_capacity.py", "--units", "8", "--encoder", "flat", "--updates", "1", "--batch", "4",
         "--out", str(out))
    assert json.loads(out.read_text())["rows"][0]["encoder"] == "flat"
    _run("set_capacity.py", "--units", "8", "--gru-hidden", "6", "12", "--updates", "1",
         "--sequences", "2", "--window", "4", "--out", str(out))
    rows = json.loads(out.read_text())["rows"]
    assert [(row["gru_hidden"], row["update"]) for row in rows] == [(6, 0), (12, 0)]
    assert all(row["position_error"] > 0 and row["units"] == 8 for row in rows)


def test_exploration_counts_distinct_poses_of_every_run_and_random(tmp_path):
    root = tmp_path / "runs"
    tiny = ["--model", "tiny", "--frames", "80", "--seeds", "0", "--", "env.options.image_size=16",
            "env.options.max_steps=20"]
    _run("exploration.py", "run", "--root", str(root), "--agents", "task", "p2e_hier", *tiny)
    _run("exploration.py", "finetune", "--root", str(root), *tiny)
    out, plot = tmp_path / "exploration.json", tmp_path / "exploration.png"
    _run("exploration.py", "report", "--root", str(root), "--every", "40", "--out", str(out),
         "--plot", str(plot))
    report = json.loads(out.read_text())
    assert set(report["summary"]) == {"task", "p2e_hier", "random", "finetuned", "scratch"}
    for name in ("task", "p2e_hier", "random"):
        run = report["runs"][name]["0"]
        assert run["frames"] == 80
        poses = run["coverage"]["poses"]
        assert list(poses) == ["40", "80"] and 1 <= poses["40"] <= poses["80"] <= 80
    # Goal rates: random's from its own rollout (80 steps, episodes of at most 20), the
    # agents' from their logged training episodes.
    assert report["runs"]["random"]["0"]["train"]["episodes"] >= 4
    for name in ("random", "task", "finetuned", "scratch"):
        train = report["runs"][name]["0"]["train"]
        assert train["episodes"] >= 1 and 0 <= train["success"] <= 1
    assert plot.stat().st_size > 0
    # An earlier report's runs merge in where --root lacks their seed (seed 7 here).
    earlier = json.loads(out.read_text())
    earlier["runs"] = {"task": {"7": earlier["runs"]["task"]["0"]}}
    (tmp_path / "earlier.json").write_text(json.dumps(earlier))
    merged = tmp_path / "merged.json"
    _run("exploration.py", "report", "--root", str(root), "--every", "40", "--out", str(merged),
         "--include", str(tmp_path / "earlier.json"))
    summary = json.loads(merged.read_text())["summary"]
    assert summary["task"]["distinct_poses"]["n"] == 2 and summary["random"]["distinct_poses"]["n"] == 1


def test_highway_control_scores_a_trained_run_against_the_baselines(tmp_path):
    import pytest

    pytest.importorskip("highway_env")
    run = tmp_path / "run"
    subprocess.run([sys.executable, str(ROOT / "examples" / "vta_dreamer.py"), "env=highway",
                    "model=tiny", "threads=1", "collector.total_frames=80", f"output_dir={run}"],
                   check=True, capture_output=True, cwd=ROOT, timeout=300)
    out = tmp_path / "highway.json"
    _run("highway_control.py", "--episodes", "2", f"VTA={run}", "--out", str(out))
    report = json.loads(out.read_text())
    names = [row["policy"] for row in report["rows"]]
    assert names == ["random", "lane_left", "idle", "lane_right", "faster", "slower", "VTA"]
    for row in report["rows"]:
        assert row["episodes"] == 2 and len(row["returns"]) == 2
        assert 0 <= row["collision_rate"] <= 1 and row["length_mean"] >= 1
    assert report["rows"][-1]["frames"] == 80 and report["rows"][-1]["levels"] == 2


def test_missed_events_splits_events_into_hits_and_misses_by_colour(tmp_path):
    run = _smoke_video_run(tmp_path, "dataset=balls")
    out = tmp_path / "missed.json"
    _run("missed_events.py", str(run), "--windows", "4", "--out", str(out))
    report = json.loads(out.read_text())
    assert set(report["quiet_quantiles"]) == {"25", "50", "75", "90"}
    counts = report["hit"]["count"] + report["miss"]["count"]
    assert counts > 0 and 0 <= report["read_rate"] <= 1
    # Every counted event changes the set of visible colours: at least one colour appears.
    appeared = sum(report["hit"]["appears"].values()) + sum(report["miss"]["appears"].values())
    assert appeared >= 1 and set(report["miss"]["appears"]) == {str(c) for c in range(10)}
    best = report["best_threshold"]
    assert set(best) == {"0", "1", "2"}
    # A wider tolerance can only match more: the best does not fall with it.
    assert best["0"]["f1"] <= best["1"]["f1"] <= best["2"]["f1"] <= 1
    assert set(report["rule_f1"]) == {"0", "1", "2"}


def test_best_threshold_finds_the_separating_threshold():
    script = ROOT / "benchmarks" / "missed_events.py"
    spec = importlib.util.spec_from_file_location("missed_events", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    best_threshold = module.best_threshold

    generator = torch.Generator().manual_seed(0)
    event = torch.rand(20, 30, generator=generator) < 0.15
    event[:, 0] = event[:, -1] = False  # the metric skips t = 0; keep the late copy inside
    score = torch.rand(20, 30, generator=generator) + 2.0 * event
    assert best_threshold(score, event, tolerances=(0,))["0"]["f1"] == 1.0
    # Shifted one step late, an exact match fails and a tolerance of 1 recovers it.
    best = best_threshold(torch.roll(score, 1, dims=1), event, tolerances=(0, 1))
    assert best["0"]["f1"] < 0.5 and best["1"]["f1"] == 1.0


def test_level_probe_scores_every_state_part_of_a_three_level_model(tmp_path):
    run = _smoke_video_run(tmp_path, "dataset=nested_one_ball", "model.levels=3")
    out = tmp_path / "probe.json"
    _run("level_probe.py", str(run), "--sequences", "6", "--out", str(out))
    report = json.loads(out.read_text())
    assert set(report["accuracy"]) == {"embed", "h", "s", "c_1", "c_2", "z_1", "z_2"}
    assert report["scenes"] >= 2 and 0 < report["majority_rate"] <= 1
    assert all(0 <= value <= 1 for value in report["accuracy"].values())


def test_level_probe_separates_what_a_feature_carries_from_what_it_does_not():
    script = ROOT / "benchmarks" / "level_probe.py"
    spec = importlib.util.spec_from_file_location("level_probe", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (400,), generator=generator)
    train = torch.arange(400) < 200
    carried = torch.nn.functional.one_hot(labels, 4).float() + 0.1 * torch.randn(400, 4, generator=generator)
    noise = torch.randn(400, 4, generator=generator)
    assert module.probe_accuracy(carried, labels, train) > 0.95
    assert module.probe_accuracy(noise, labels, train) < 0.45


def _surprise_rules():
    spec = importlib.util.spec_from_file_location(
        "surprise_rules", ROOT / "benchmarks" / "surprise_rules.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_surprise_rules_typical_rearm_recovers_the_second_of_back_to_back_events():
    history = torch.cat([torch.full((90,), 2.0), torch.full((10,), 40.0)]).log1p()
    record = {"scale_nats": 1.0, "histogram_log1p": torch.histc(history, 128, 0, 9.2104).tolist(),
              "normalised_surprise": [[2.0, 2.0, 50.0, 40.0, 2.0, 2.0, 2.0, 45.0, 2.0]],
              "read": [[1, 0, 1, 0, 0, 0, 0, 1, 0]], "event": [[0, 0, 1, 1, 0, 0, 0, 1, 0]]}
    rows = {row["rule"]: row for row in _surprise_rules().score_record(
        record, rules=(("split", 0.1), ("split", 0.1, "typical")))}
    assert rows["split, prominence 0.1"]["f1"] < 1.0
    assert rows["split, prominence 0.1, rearm typical"]["f1"] == 1.0


def test_surprise_rules_scores_a_trained_run(tmp_path):
    run = _smoke_video_run(tmp_path, "dataset=balls", "+model.rssm.boundary_kind=surprise")
    record = _surprise_rules().record_from_run(run, windows=4)
    steps = len(record["event"][0])
    assert len(record["normalised_surprise"]) == len(record["read"]) == len(record["event"]) >= 4
    assert all(len(row) == steps for row in record["normalised_surprise"])
    assert record["scale_nats"] > 0 and len(record["histogram_log1p"]) == 128
    _run("surprise_rules.py", "--run", str(run), "--windows", "4")
