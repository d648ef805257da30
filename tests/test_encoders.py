import pytest
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictSequential
from torchrl.data import Composite, Unbounded
from torchrl.modules.functional import symlog

from torchrl_vta.modules.decoders import MultiDecoder, make_decoder_module
from torchrl_vta.modules.encoders import MultiEncoder, make_encoder_module

TINY = dict(cnn_depth=2, cnn_mults=(1, 1, 1, 1), mlp_units=8, audio_units=8)
# 4 stride-2 stages on 64x64 with 2 channels: 4 * 4 * 2 = 32 CNN features.
CNN_FEATURES = 32


def make_spec(**extra):
    return Composite(
        pixels=Unbounded((3, 64, 64), dtype=torch.uint8),
        position=Unbounded((5,)),
        audio=Unbounded((16,)),
        is_init=Unbounded((1,), dtype=torch.bool),
        step_count=Unbounded((1,), dtype=torch.int64),
        episode_reward=Unbounded((1,)),
        **extra,
    )


def make_obs(*batch):
    return {
        "pixels": torch.randint(0, 256, (*batch, 3, 64, 64), dtype=torch.uint8),
        "position": torch.randn(*batch, 5) * 10,
        "audio": torch.rand(*batch, 16) * 2 - 1,
    }


def encode(encoder, obs):
    return encoder(*(obs[k] for k in encoder.in_keys))


@pytest.fixture
def encoder():
    return MultiEncoder(make_spec(), **TINY)


def test_default_routing_skips_bookkeeping(encoder):
    assert encoder.routing == {"pixels": "cnn", "position": "mlp", "audio": "audio"}
    assert encoder.in_keys == ["pixels", "position", "audio"]
    assert (encoder.cnn_in_keys, encoder.mlp_in_keys, encoder.audio_in_keys) == (
        ["pixels"],
        ["position"],
        ["audio"],
    )
    assert encoder.key_shapes == {
        "pixels": torch.Size([3, 64, 64]),
        "position": torch.Size([5]),
        "audio": torch.Size([16]),
    }
    assert encoder.out_features == CNN_FEATURES + 8 + 8


def test_regex_routing_of_nested_keys():
    spec = Composite(
        sensors=Composite(position=Unbounded((3,)), touch=Unbounded((2,))),
        mic=Unbounded((4,)),
        camera=Unbounded((1, 32, 32)),
        rgb=Unbounded((3, 32, 32), dtype=torch.uint8),
    )
    encoder = MultiEncoder(
        spec,
        cnn_keys=r"^(camera|rgb)$",
        mlp_keys=r"^sensors\.",
        audio_keys=r"mic",
        cnn_depth=2,
        cnn_mults=(1,),
        mlp_units=8,
    )
    assert encoder.cnn_in_keys == ["camera", "rgb"]
    assert encoder.mlp_in_keys == [("sensors", "position"), ("sensors", "touch")]
    assert encoder.audio_in_keys == ["mic"]
    # Both images share one CNN over 1 + 3 channels.
    assert encoder.cnn.layers[0].in_channels == 4
    obs = [
        torch.rand(2, 1, 32, 32),
        torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8),
        torch.randn(2, 3),
        torch.randn(2, 2),
        torch.randn(2, 4),
    ]
    assert encoder(*obs).shape == (2, encoder.out_features)


def test_obs_keys_selects_and_bypasses_filter():
    encoder = MultiEncoder(make_spec(), obs_keys=["position", "episode_reward"], mlp_units=8)
    assert encoder.routing == {"position": "mlp", "episode_reward": "mlp"}
    assert encoder.mlp.model[0].in_features == 6


def test_batched_spec_uses_event_shapes():
    encoder = MultiEncoder(make_spec().expand(4), **TINY)
    assert encoder.key_shapes["pixels"] == (3, 64, 64)
    assert encode(encoder, make_obs(4)).shape == (4, encoder.out_features)


def test_spec_without_observations_raises():
    spec = Composite(is_init=Unbounded((1,), dtype=torch.bool), reward=Unbounded((1,)))
    with pytest.raises(ValueError, match="no encodable key.*obs_keys"):
        MultiEncoder(spec)


def test_exclude_keys_drops_keys():
    encoder = MultiEncoder(make_spec(), exclude_keys=("audio", "episode_reward"), **TINY)
    assert encoder.in_keys == ["pixels", "position"]


@pytest.mark.parametrize("batch", [(3,), (2, 3)])
def test_encoder_shapes(encoder, batch):
    assert encode(encoder, make_obs(*batch)).shape == (*batch, encoder.out_features)


def test_float_pixels_match_uint8(encoder):
    obs = make_obs(2)
    as_float = dict(obs, pixels=obs["pixels"].float() / 255)
    torch.testing.assert_close(encode(encoder, obs), encode(encoder, as_float))


def test_audio_path_is_separate(encoder):
    audio_params = {id(p) for p in encoder.audio.parameters()}
    other_params = {id(p) for p in encoder.mlp.parameters()} | {
        id(p) for p in encoder.cnn.parameters()
    }
    assert audio_params and not audio_params & other_params
    # The vector MLP sees only the 5 position features.
    assert encoder.mlp.model[0].in_features == 5
    assert encoder.audio.model[0].in_features == 16

    obs = make_obs(4)
    changed = dict(obs, audio=torch.rand(4, 16) * 2 - 1)
    delta = (encode(encoder, obs) - encode(encoder, changed)).abs()
    audio_cols = encoder.path_slices["audio"]
    assert audio_cols == slice(CNN_FEATURES + 8, CNN_FEATURES + 16)
    assert delta[:, audio_cols].gt(0).any()
    assert delta[:, : audio_cols.start].eq(0).all()


def test_vectors_symlogged_audio_raw(encoder):
    seen = {}
    encoder.mlp.register_forward_pre_hook(lambda m, args: seen.setdefault("mlp", args[0]))
    encoder.audio.register_forward_pre_hook(lambda m, args: seen.setdefault("audio", args[0]))
    obs = make_obs(2)
    encode(encoder, obs)
    torch.testing.assert_close(seen["mlp"], symlog(obs["position"]))
    torch.testing.assert_close(seen["audio"], obs["audio"])


def test_unmatched_image_key_raises():
    spec = make_spec(rgb=Unbounded((3, 64, 64), dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"'rgb'.*matched by no encoder path.*cnn_keys"):
        MultiEncoder(spec, **TINY)


def test_unmatched_vector_key_raises():
    spec = make_spec(velocity=Unbounded((2,)))
    with pytest.raises(ValueError, match=r"'velocity'.*no encoder path.*mlp_keys.*audio_keys"):
        MultiEncoder(spec, mlp_keys=r"^position$", **TINY)


def test_key_on_two_paths_raises():
    with pytest.raises(
        ValueError, match=r"'audio'.*two encoder paths.*mlp_keys='\.\*'.*audio_keys.*mlp_keys=None"
    ):
        MultiEncoder(make_spec(), mlp_keys=r".*", **TINY)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(cnn_keys="("), "cnn_keys"),
        (dict(obs_keys=["missing"]), "'missing'.*not a leaf"),
        (dict(obs_keys=["step_count"]), "'step_count'.*dtype"),
        (dict(mlp_layers=0), "mlp_layers"),
        (dict(cnn_kernel=4), "cnn_kernel"),
        (dict(cnn_minres=0), "cnn_minres"),
        (dict(exclude_keys="audio"), "exclude_keys"),
    ],
)
def test_bad_encoder_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiEncoder(make_spec(), **{**TINY, **kwargs})


def test_encoder_checks_input_shapes(encoder):
    obs = make_obs(2)
    with pytest.raises(ValueError, match="'position'"):
        encode(encoder, dict(obs, position=torch.randn(2, 4)))
    with pytest.raises(ValueError, match="expects 3 tensors"):
        encoder(obs["pixels"])


# At least one stage is kept, so 4x4 images still get one (to a 2x2 map).
@pytest.mark.parametrize("side, stages", [(64, 4), (32, 3), (16, 2), (4, 1)])
def test_cnn_minres_keeps_the_stages_above_it(side, stages):
    spec = Composite(pixels=Unbounded((3, side, side), dtype=torch.uint8))
    encoder = MultiEncoder(spec, cnn_depth=2, cnn_mults=(1, 2, 3, 4), cnn_minres=4)
    assert encoder.cnn_mults == (1, 2, 3, 4)[:stages]
    last = max(side >> stages, 1)
    assert encoder.out_features == 2 * (1, 2, 3, 4)[stages - 1] * last * last
    decoder = MultiDecoder.from_encoder(encoder, in_features=6, cnn_blocks=1)
    assert decoder(torch.randn(2, 6))[0].shape == (2, 3, side, side)


@pytest.fixture
def decoder(encoder):
    return MultiDecoder.from_encoder(encoder, in_features=encoder.out_features)


@pytest.mark.parametrize("batch", [(3,), (2, 3)])
def test_decoder_shapes(decoder, batch):
    assert decoder.out_keys == ["pixels", "position", "audio"]
    outputs = decoder(torch.randn(*batch, decoder.in_features))
    assert [o.shape for o in outputs] == [
        (*batch, 3, 64, 64),
        (*batch, 5),
        (*batch, 16),
    ]
    losses = decoder.loss(dict(zip(decoder.out_keys, outputs)), make_obs(*batch))
    assert set(losses) == {"pixels", "position", "audio"}
    assert all(loss.shape == batch and loss.gt(0).all() for loss in losses.values())


def test_decoder_loss_zero_for_perfect_prediction(decoder):
    targets = make_obs(2, 3)
    perfect = {
        "pixels": targets["pixels"].float() / 255,
        "position": symlog(targets["position"]),
        "audio": targets["audio"].clone(),
    }
    for key, loss in decoder.loss(perfect, targets).items():
        assert torch.equal(loss, torch.zeros(2, 3)), key


def test_decoder_loss_sums_over_event_dims(decoder):
    targets = make_obs(2)
    off = {
        "pixels": targets["pixels"].float() / 255 + 0.5,
        "position": symlog(targets["position"]) - 2.0,
        "audio": targets["audio"] + 1.0,
    }
    losses = decoder.loss(off, targets)
    torch.testing.assert_close(losses["pixels"], torch.full((2,), 0.25 * 3 * 64 * 64))
    torch.testing.assert_close(losses["position"], torch.full((2,), 4.0 * 5))
    torch.testing.assert_close(losses["audio"], torch.full((2,), 1.0 * 16))


def test_decoder_loss_validates_inputs(decoder):
    targets = make_obs(2)
    predictions = dict(zip(decoder.out_keys, decoder(torch.randn(2, decoder.in_features))))
    with pytest.raises(ValueError, match="targets has no entry.*'audio'"):
        decoder.loss(predictions, {k: v for k, v in targets.items() if k != "audio"})
    with pytest.raises(ValueError, match="'position' differ in shape"):
        decoder.loss(predictions, dict(targets, position=torch.randn(2, 1, 5)))


def test_gradient_flows_from_decoder_loss_to_encoder(encoder, decoder):
    obs = make_obs(2, 2)
    embed = encode(encoder, obs)
    predictions = dict(zip(decoder.out_keys, decoder(embed)))
    sum(decoder.loss(predictions, obs).values()).sum().backward()
    for name, param in encoder.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(in_features=12), "cnn_blocks=8 must divide in_features=12"),
        (dict(cnn_mults=(1,) * 7), "cnn_mults"),
        (dict(routing={"position": "vision"}), "routing\\['position'\\]"),
        (dict(routing={"position": "cnn"}), "'position'.*3-D"),
        (dict(routing={"velocity": "mlp"}), "'velocity'.*key_shapes"),
    ],
)
def test_bad_decoder_arguments(encoder, kwargs, match):
    args = dict(
        key_shapes=encoder.key_shapes,
        routing=encoder.routing,
        in_features=16,
        cnn_depth=2,
        cnn_mults=(1, 1, 1, 1),
    )
    with pytest.raises(ValueError, match=match):
        MultiDecoder(**{**args, **kwargs})


def test_encoder_module_next_prefix(encoder):
    module = make_encoder_module(encoder, key_prefix="next")
    assert module.in_keys == [("next", "pixels"), ("next", "position"), ("next", "audio")]
    assert module.out_keys == [("next", "embed")]
    obs = make_obs(2, 3)
    td = TensorDict({"next": obs, **make_obs(2, 3)}, [2, 3])
    module(td)
    torch.testing.assert_close(td["next", "embed"], encode(encoder, obs))
    assert "embed" not in td.keys()


def test_encoder_module_renamed_keys(encoder):
    module = make_encoder_module(
        encoder, in_keys={"pixels": ("cam", "rgb"), "audio": "sound"}, out_key="obs_embed"
    )
    assert module.in_keys == [("cam", "rgb"), "position", "sound"]
    obs = make_obs(4)
    td = TensorDict(
        {("cam", "rgb"): obs["pixels"], "position": obs["position"], "sound": obs["audio"]},
        [4],
    )
    torch.testing.assert_close(module(td)["obs_embed"], encode(encoder, obs))
    with pytest.raises(ValueError, match="'velocity'"):
        make_encoder_module(encoder, in_keys={"velocity": "v"})


def test_decoder_module_keys(decoder):
    module = make_decoder_module(
        decoder, in_keys="feature", out_prefix="pred_", out_keys={"audio": ("hat", "sound")}
    )
    assert module.in_keys == ["feature"]
    assert module.out_keys == ["pred_pixels", "pred_position", ("hat", "sound")]
    feature = torch.randn(2, 3, decoder.in_features)
    td = module(TensorDict({"feature": feature}, [2, 3]))
    for out_key, expected in zip(module.out_keys, decoder(feature)):
        torch.testing.assert_close(td[out_key], expected)
    with pytest.raises(ValueError, match="'missing'"):
        make_decoder_module(decoder, out_keys={"missing": "x"})


def test_encoder_decoder_pipeline_on_next(encoder):
    decoder = MultiDecoder.from_encoder(encoder, in_features=encoder.out_features)
    model = TensorDictSequential(
        make_encoder_module(encoder, key_prefix="next"),
        make_decoder_module(decoder, in_keys=["embed"], key_prefix="next"),
    )
    td = TensorDict({"next": make_obs(2, 3)}, [2, 3])
    model(td)
    assert td["next", "reco_pixels"].shape == (2, 3, 3, 64, 64)
    assert td["next", "reco_audio"].shape == (2, 3, 16)
    reco = dict(zip(decoder.out_keys, model[1].out_keys))
    predictions = {k: td[v] for k, v in reco.items()}
    losses = decoder.loss(predictions, {k: td["next", k] for k in decoder.out_keys})
    assert all(loss.shape == (2, 3) for loss in losses.values())
