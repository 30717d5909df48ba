"""DrQ random shift (plasticity_rl/augment.py) and its use inside the jitted DQN update."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from plasticity_rl import augment
from plasticity_rl import networks
from plasticity_rl.agents import dqn

shift = jax.jit(augment.random_shift, static_argnames="pad")
OBS = (12, 12, 2)


def one_hot_images(batch: int, at=(40, 40), size=84) -> np.ndarray:
  images = np.zeros((batch, size, size, 2), np.uint8)
  images[:, at[0], at[1], :] = 255
  return images


def test_shapes_and_dtype_kept():
  images = np.random.default_rng(0).integers(0, 256, (5, 84, 84, 4), dtype=np.uint8)
  out = shift(jax.random.key(0), images)
  assert out.shape == images.shape and out.dtype == jnp.uint8


def test_a_pixel_moves_by_at_most_the_pad_and_samples_get_different_shifts():
  out = np.asarray(shift(jax.random.key(1), one_hot_images(64)))
  moves = []
  for image in out:
    ys, xs = np.nonzero(image[..., 0])
    assert len(ys) == 1  # Far from the edges: the one pixel is moved, never duplicated or lost.
    dy, dx = ys[0] - 40, xs[0] - 40
    assert abs(dy) <= augment.DRQ_PAD and abs(dx) <= augment.DRQ_PAD
    moves.append((dy, dx))
  assert len(set(moves)) > 20  # 81 possible shifts, drawn per sample.
  assert {m[0] for m in moves} == set(range(-4, 5))  # Every shift in range is reachable.


def test_edges_are_replicated():
  ramp = np.broadcast_to(np.arange(84, dtype=np.uint8)[None, :, None, None], (16, 84, 84, 1)).copy()
  out = np.asarray(shift(jax.random.key(2), ramp))  # Row y carries the value y.
  for image in out[..., 0]:
    assert np.all(np.diff(image[:, 0].astype(int)) >= 0)  # Still a ramp, clamped at 0 and 83, no zero padding.
    assert image[0, 0] <= 4 and image[-1, 0] >= 79
    assert set(np.unique(np.diff(image[:, 0].astype(int)))) <= {0, 1}


def test_deterministic_given_rng():
  images = np.random.default_rng(3).integers(0, 256, (8, 84, 84, 4), dtype=np.uint8)
  a, b = shift(jax.random.key(4), images), shift(jax.random.key(4), images)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, shift(jax.random.key(5), images))


def test_augment_batch_shifts_obs_and_next_obs_independently():
  images = one_hot_images(32)
  batch = {"obs": images, "next_obs": images, "action": np.arange(32)}
  out = augment.augment_batch("random_shift", jax.random.key(6), batch)
  assert not np.array_equal(out["obs"], out["next_obs"])
  assert out["action"] is batch["action"]
  assert augment.augment_batch("none", jax.random.key(6), batch) is batch
  with pytest.raises(ValueError, match="cutout"):
    augment.augment_batch("cutout", jax.random.key(6), batch)


# -- inside the update ----------------------------------------------------------------------------------------


@functools.cache
def agents() -> tuple[dqn.DQNAgent, dqn.DQNAgent]:
  """Dense layers on 12×12 images: quick to compile; the shift does not care what reads the images."""
  network = networks.QNetwork(specs=(networks.LayerSpec("head", "dense_0", "dense", 8),
                                     networks.LayerSpec("head", "dense_1", "dense", 4)))
  opt = dqn.make_optimizer(ml_collections.ConfigDict({"optimizer": "adam_dopamine", "learning_rate": None}))
  plain = dqn.DQNAgent(network, opt, OBS, 4, target_update_period_updates=1000)
  return plain, dqn.DQNAgent(network, opt, OBS, 4, target_update_period_updates=1000, augment="random_shift")


def batch(seed: int) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  return {"obs": rng.integers(0, 256, (8, *OBS), dtype=np.uint8),
          "next_obs": rng.integers(0, 256, (8, *OBS), dtype=np.uint8),
          "action": rng.integers(0, 4, 8).astype(np.int32), "reward": rng.normal(size=8).astype(np.float32),
          "discount": np.full(8, 0.99, np.float32)}


def test_update_with_augmentation_carries_the_rng_and_compiles_once():
  plain, drq = agents()
  state = drq.init(jax.random.key(0))
  new, _ = drq.update(state, batch(0))
  assert not np.array_equal(jax.random.key_data(new.rng), jax.random.key_data(state.rng))
  size = dqn.DQNAgent.update._cache_size()  # pylint: disable=protected-access
  for i in range(1, 3):
    new, info = drq.update(new, batch(i))
    assert np.isfinite(float(info["loss"]))
  assert dqn.DQNAgent.update._cache_size() == size  # pylint: disable=protected-access
  # The same state and batch, with and without the shift, give different steps; without it the rng is untouched.
  plain_new, _ = plain.update(state, batch(0))
  np.testing.assert_array_equal(jax.random.key_data(plain_new.rng), jax.random.key_data(state.rng))
  drq_new, _ = drq.update(state, batch(0))
  assert not np.array_equal(plain_new.params["trainable"]["head"]["dense_0"]["linear"]["kernel"],
                            drq_new.params["trainable"]["head"]["dense_0"]["linear"]["kernel"])


def test_drq_dopamine_moves_pixels_minus_three_to_plus_four_and_scales_intensity_per_image():
  # dopamine/labs/atari_100k/atari_100k_rainbow_agent.py: randint(0, padded − size) = 0…7 crop offsets, then
  # x · (1 + 0.05·clip(N(0, 1), −2, 2)) per image.
  out = np.asarray(jax.jit(augment.drq_dopamine)(jax.random.key(1), one_hot_images(256)))
  assert out.dtype == np.float32
  moves, scales = set(), []
  for image in out:
    ys, xs = np.nonzero(image[..., 0])
    assert len(ys) == 1
    moves.add((ys[0] - 40, xs[0] - 40))  # The crop at offset o moves a pixel by pad − o.
    scales.append(image[ys[0], xs[0], 0] / 255.0)
  assert {m[0] for m in moves} == set(range(-3, 5))  # Offsets 0…7: never random_shift's 9th (a move of −4).
  scales = np.asarray(scales)
  assert scales.min() >= 0.9 - 1e-6 and scales.max() <= 1.1 + 1e-6 and scales.std() > 0.02
  np.testing.assert_allclose(out[0][out[0] > 0] / 255.0, scales[0], rtol=1e-6)  # One scale per image.


def test_drq_dopamine_batches_feed_the_network_on_the_uint8_scale():
  images = np.full((2, 84, 84, 4), 200, np.uint8)
  out = augment.augment_batch("drq_dopamine", jax.random.key(0), {"obs": images, "next_obs": images})
  x = networks.QNetwork.preprocess(out["obs"])
  assert 0.7 < float(x.min()) and float(x.max()) < 0.87  # ≈ 200/255 × (1 ± 0.1), not divided twice.
  assert not np.array_equal(out["obs"], out["next_obs"])  # Independent draws for s and s'.
