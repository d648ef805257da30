"""Set-structured observations: the set encoder/decoder and their routing."""

import math

import pytest
import torch
from torchrl.data import Categorical, Composite, Unbounded
from torchrl.modules.functional import symlog

from torchrl_vta.modules.decoders import MultiDecoder
from torchrl_vta.modules.encoders import MultiEncoder
from torchrl_vta.modules.sets import SetDecoder, SetEncoder

K, F = 8, 6
STEPS_ON_BATCH = 150
DISCRETE = {4: 4, 5: 2}


def _sets(*batch, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(*batch, K, F, generator=generator) * 5
    x[..., 4] = torch.randint(0, 4, (*batch, K), generator=generator).float()
    x[..., 5] = torch.randint(0, 2, (*batch, K), generator=generator).float()
    mask = torch.rand(*batch, K, generator=generator) > 0.4
    return x, mask


@pytest.fixture
def encoder():
    torch.manual_seed(0)
    return SetEncoder(F, discrete=DISCRETE, units=16, heads=2).eval()


def test_embedding_is_invariant_to_the_order_of_the_slots(encoder):
    x, mask = _sets(4)
    order = torch.randperm(K)
    torch.testing.assert_close(encoder(x[:, order], mask[:, order]), encoder(x, mask),
                               rtol=1e-5, atol=1e-5)


def test_slot_ids_tell_the_slots_apart_for_worlds_whose_slots_are_identities():
    torch.manual_seed(0)
    identified = SetEncoder(F, discrete=DISCRETE, units=16, heads=2, slot_ids=K).eval()
    x, mask = _sets(4)
    mask[:] = True
    order = torch.roll(torch.arange(K), 1)
    assert not torch.allclose(identified(x[:, order], mask[:, order]), identified(x, mask))
    with pytest.raises(ValueError, match="built for 8 identified slots, got 7"):
        identified(x[:, :7], mask[:, :7])
    routed = MultiEncoder(_spec(), set_units=16, set_heads=2, set_slot_ids=True)
    assert routed.sets[0].slot_ids.num_embeddings == K


def test_empty_slots_have_no_influence_on_the_embedding_or_the_loss(encoder):
    x, mask = _sets(3, 5)
    other = torch.where(mask[..., None], x, torch.randn_like(x) * 100)
    assert torch.equal(encoder(x, mask), encoder(other, mask))
    decoder = SetDecoder(10, slots=K, features=F, discrete=DISCRETE, units=16)
    prediction = decoder(torch.randn(3, 5, 10))
    reco, _ = decoder.loss(prediction, x, mask)
    reco_other, _ = decoder.loss(prediction, other, mask)
    assert torch.equal(reco, reco_other)
    # A prediction that differs only on empty slots: same reconstruction loss.
    noisy = torch.where(mask[..., None], prediction, prediction + torch.randn_like(prediction))
    assert torch.equal(decoder.loss(noisy, x, mask)[0], reco)
    # ...but a change on an occupied slot does change it.
    assert not torch.equal(decoder.loss(prediction + 1, x, mask)[0], reco)


def test_sets_of_any_size_embed_on_one_and_two_batch_dims(encoder):
    x, mask = _sets(2, 3)
    mask[0, 0] = False                     # an empty set
    mask[0, 1] = True                      # a full one
    out = encoder(x, mask)
    assert out.shape == (2, 3, 16) and torch.isfinite(out).all()
    # An empty set embeds the same whatever its padding holds.
    assert torch.equal(out[0, 0], encoder(x[0, 0] * 0 + 7, mask[0, 0]))
    torch.testing.assert_close(encoder(x[1], mask[1]), out[1])
    assert not torch.allclose(out[0, 0], out[0, 1])


def test_existence_loss_on_known_cases():
    decoder = SetDecoder(4, slots=2, features=2, units=8)
    target, mask = torch.zeros(1, 2, 2), torch.tensor([[True, False]])
    zero = torch.zeros(1, 2, 3)           # existence logit 0: log 2 per slot
    assert math.isclose(decoder.loss(zero, target, mask)[1].item(), 2 * math.log(2), rel_tol=1e-6)
    right = zero.clone()
    right[..., -1] = torch.tensor([[30.0, -30.0]])
    assert decoder.loss(right, target, mask)[1].item() < 1e-10
    wrong = zero.clone()
    wrong[..., -1] = torch.tensor([[-30.0, 30.0]])
    assert math.isclose(decoder.loss(wrong, target, mask)[1].item(), 60.0, rel_tol=1e-6)


def test_a_perfect_reconstruction_scores_zero_and_decodes_back():
    decoder = SetDecoder(4, slots=K, features=F, discrete=DISCRETE, units=8)
    x, mask = _sets(3)
    continuous = symlog(x[..., [0, 1, 2, 3]])
    site = torch.nn.functional.one_hot(x[..., 4].long(), 4) * 200.0 - 100.0
    lane = torch.nn.functional.one_hot(x[..., 5].long(), 2) * 200.0 - 100.0
    exists = (mask.float() * 200 - 100)[..., None]
    perfect = torch.cat([continuous, site, lane, exists], -1)
    reconstruction, existence = decoder.loss(perfect, x, mask)
    assert reconstruction.abs().max().item() < 1e-6 and existence.max().item() < 1e-6
    values, probability = decoder.decode(perfect)
    torch.testing.assert_close(values, x, rtol=1e-4, atol=1e-4)
    assert torch.equal(probability > 0.5, mask)


def _spec(**extra):
    return Composite(vehicles=Unbounded((K, F)),
                     vehicles_mask=Categorical(2, (K,), dtype=torch.bool),
                     position=Unbounded((3,)), **extra)


def test_multi_encoder_routes_sets_with_their_masks_and_the_decoder_mirrors_it():
    encoder = MultiEncoder(_spec(), mlp_units=8, set_units=16, set_heads=2,
                           set_discrete=DISCRETE)
    assert encoder.routing == {"position": "mlp", "vehicles": "set"}
    assert encoder.in_keys == ["position", "vehicles", "vehicles_mask"]
    assert encoder.out_features == 8 + 16 and encoder.path_slices["set"] == slice(8, 24)
    x, mask = _sets(2)
    assert encoder(torch.randn(2, 3), x, mask).shape == (2, 24)
    decoder = MultiDecoder.from_encoder(encoder, 12)
    assert decoder.out_keys == ["position", "vehicles"]
    position, vehicles = decoder(torch.randn(2, 12))
    losses = decoder.loss({"position": position, "vehicles": vehicles},
                          {"position": torch.zeros(2, 3), "vehicles": x, "vehicles_mask": mask})
    assert losses["vehicles"].shape == (2,)
    with pytest.raises(ValueError, match="'vehicles_mask', the mask of the set key 'vehicles'"):
        decoder.loss({"position": position, "vehicles": vehicles},
                     {"position": torch.zeros(2, 3), "vehicles": x})


def test_existence_scale_weighs_only_the_existence_term():
    encoder = MultiEncoder(_spec(), mlp_units=8, set_units=16, set_heads=2, set_discrete=DISCRETE)
    x, mask = _sets(2)
    targets = {"position": torch.zeros(2, 3), "vehicles": x, "vehicles_mask": mask}
    torch.manual_seed(0)
    decoder = MultiDecoder.from_encoder(encoder, 12, set_existence_scale=3.0)
    predictions = dict(zip(decoder.out_keys, decoder(torch.randn(2, 12))))
    reconstruction, existence = decoder.sets[0].loss(predictions["vehicles"], x, mask)
    weighted = decoder.loss(predictions, targets)["vehicles"]
    torch.testing.assert_close(weighted, reconstruction + 3.0 * existence)
    assert (existence > 0).all() and (reconstruction > 0).all()
    for bad in (-1.0, math.inf, "2"):
        with pytest.raises(ValueError, match="set_existence_scale must be a finite number >= 0"):
            MultiDecoder.from_encoder(encoder, 12, set_existence_scale=bad)


def test_set_routing_errors_name_the_key():
    with pytest.raises(ValueError, match="Set key 'vehicles'.*set_keys='\\^agents\\$'"):
        MultiEncoder(_spec(), set_keys=r"^agents$")
    with pytest.raises(ValueError, match="set_masks names \\['agents'\\]"):
        MultiEncoder(_spec(), set_masks={"agents": "vehicles_mask"})
    with pytest.raises(ValueError, match="set_masks\\['vehicles'\\]='present'"):
        MultiEncoder(_spec(), set_masks={"vehicles": "present"})
    bad = Composite(vehicles=Unbounded((K, F)), vehicles_mask=Unbounded((K,)))
    with pytest.raises(ValueError, match="mask 'vehicles_mask' of set key 'vehicles' must be boolean"):
        MultiEncoder(bad)
    with pytest.raises(ValueError, match="set_discrete column 9"):
        MultiEncoder(_spec(), set_discrete={9: 3})
    # Without a mask key every slot counts as present.
    unmasked = MultiEncoder(Composite(vehicles=Unbounded((K, F))), set_units=16, set_heads=2)
    assert unmasked.set_mask_keys == {"vehicles": None} and unmasked.in_keys == ["vehicles"]


# ---------------------------------------------------------------- on the traffic world
@pytest.mark.parametrize("levels", [1, 2])
def test_world_model_on_traffic_learns_the_vehicle_set(levels):
    """The world model routes the traffic env's vehicle set through the set path, and its
    losses (set reconstruction + existence, KL) fall on a fixed batch at both levels."""
    from torchrl_vta import WorldModelLoss, make_env, make_world_model
    from torchrl_vta.envs.traffic import VEHICLE_DISCRETE_COLUMNS

    torch.manual_seed(0)
    env = make_env("traffic", controlled=True, max_steps=200, seed=3)
    model = make_world_model(env.observation_spec, env.action_spec, preset="test", levels=levels,
                             encoder=dict(set_discrete=VEHICLE_DISCRETE_COLUMNS))
    assert model.encoder.routing == {"vehicles": "set"}
    assert model.encoder.set_mask_keys == {"vehicles": "vehicles_mask"}
    batch = torch.stack([env.rollout(24, break_when_any_done=False) for _ in range(4)])
    loss = WorldModelLoss(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for _ in range(STEPS_ON_BATCH):
        losses = loss(batch.clone())
        optimizer.zero_grad()
        (losses["loss_reco"] + losses["loss_kl"]).backward()
        optimizer.step()
        history.append(losses["reco_vehicles"].item())
    assert history[-1] < 0.5 * history[0], history[::8]


def test_recipe_trains_on_traffic(tmp_path):
    from tests.test_recipe import config, load_script

    result = load_script().train(config(
        "env=traffic", "model=tiny", f"output_dir={tmp_path / 'run'}",
        "collector.total_frames=120", "collector.init_random_frames=40"))
    assert result["frames"] == 120 and result["updates"] > 0


def test_deterministic_baseline_learns_and_rolls_out_its_own_predictions():
    from torchrl_vta.envs.traffic import VEHICLE_DISCRETE_COLUMNS, traffic_sequences
    from torchrl_vta.modules.set_baseline import DeterministicSetModel

    torch.manual_seed(0)
    data = traffic_sequences(4, 24, seed=1)
    model = DeterministicSetModel(16, 8, discrete=VEHICLE_DISCRETE_COLUMNS, units=16,
                                  hidden=32, layers=1, heads=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for _ in range(120):
        loss = model.loss(data["vehicles"], data["vehicles_mask"])["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    assert history[-1] < 0.5 * history[0], history[::20]
    values, exists = model.rollout(data["vehicles"][:, :10], data["vehicles_mask"][:, :10], 6)
    assert values.shape == (4, 6, 16, 8) and exists.shape == (4, 6, 16)
    assert ((exists >= 0) & (exists <= 1)).all()
    # The open loop feeds its own predictions back: a different context, a different future.
    other, _ = model.rollout(data["vehicles"][:, 10:20], data["vehicles_mask"][:, 10:20], 6)
    assert not torch.allclose(values, other)
