"""Image augmentation of learner batches (DrQ, Kostrikov et al. 2021), pure and jit-able.

`random_shift` pads each image by `pad` pixels replicating its edges and crops
it back to its size at a random offset: an integer shift of up to ±pad pixels
in each direction, drawn per sample. DrQ's Atari setting is pad 4 on 84×84.
`augment_batch` shifts `obs` and `next_obs` of a replay batch with independent
shifts (per sample and between the two), as DrQ augments s and s' separately.

`drq_dopamine` is the augmentation of Dopamine's Atari-100k agents, the DrQ(ε)
baseline (dopamine/labs/atari_100k/atari_100k_rainbow_agent.py,
`drq_image_augmentation`): edge padding by 4, a crop at an offset drawn from
[0, 2·pad) — so a pixel moves by −3…+4, where `random_shift` moves it by −4…+4 —
then an intensity scale 1 + 0.05·clip(N(0, 1), −2, 2) per image. Its output is
float32 on the uint8 scale (the network divides by 255 as for raw frames).

The intervention is `Augment` (base.Hooks: `transform_batch`), registered as "augment", switched by
config.learner.augment: fresh draws every update from a key split off `TrainState.rng`.
`plasticity_rl.augment` re-exports this module.
"""

import dataclasses

import jax
import jax.numpy as jnp

from plasticity_rl.interventions import base

AUGMENTATIONS = ("none", "random_shift", "drq_dopamine")
DRQ_PAD = 4
INTENSITY_SCALE = 0.05  # Dopamine's `_intensity_aug` default (from Schwarzer et al. 2020).


def random_shift(rng: jax.Array, images: jax.Array, pad: int = DRQ_PAD, max_offset: int | None = None) -> jax.Array:
  """[B, H, W, C] images, each shifted by its own (dy, dx) ∈ [−pad, pad]² with edge replication
  (crop offsets 0…max_offset in the padded image; default 2·pad)."""
  batch, height, width, channels = images.shape
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
  offsets = jax.random.randint(rng, (batch, 2), 0, (2 * pad if max_offset is None else max_offset) + 1)
  crop = lambda image, offset: jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (height, width, channels))
  return jax.vmap(crop)(padded, offsets)


def augment_batch(kind: str, rng: jax.Array, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """The batch with `obs` and `next_obs` augmented by `kind` (independent draws); other keys as they are."""
  if kind == "none":
    return batch
  if kind == "random_shift":
    obs_rng, next_rng = jax.random.split(rng)
    return {**batch, "obs": random_shift(obs_rng, batch["obs"]),
            "next_obs": random_shift(next_rng, batch["next_obs"])}
  if kind == "drq_dopamine":
    obs_rng, next_rng = jax.random.split(rng)
    return {**batch, "obs": drq_dopamine(obs_rng, batch["obs"]), "next_obs": drq_dopamine(next_rng, batch["next_obs"])}
  raise ValueError(f"unknown augmentation {kind!r}; allowed: {AUGMENTATIONS}")


def drq_dopamine(rng: jax.Array, images: jax.Array, pad: int = DRQ_PAD) -> jax.Array:
  """Dopamine's `drq_image_augmentation` on [B, H, W, C] uint8 images: float32, still on the 0–255 scale."""
  intensity_rng, crop_rng = jax.random.split(rng)
  shifted = random_shift(crop_rng, images, pad, max_offset=2 * pad - 1).astype(jnp.float32)
  noise = jax.random.normal(intensity_rng, (images.shape[0], 1, 1, 1))
  return shifted * (1.0 + INTENSITY_SCALE * jnp.clip(noise, -2.0, 2.0))


@base.register("augment")
@dataclasses.dataclass(frozen=True)
class Augment(base.Hooks):
  """Learner-batch augmentation `kind` (AUGMENTATIONS, not "none") of every update's batch."""

  kind: str

  def transform_batch(self, state, batch):
    rng, augment_rng = jax.random.split(state.rng)
    return state.replace(rng=rng), augment_batch(self.kind, augment_rng, batch)

  @classmethod
  def validate(cls, config) -> None:
    kind = config.learner.get("augment", "none")
    if kind not in AUGMENTATIONS:
      raise ValueError(f"learner.augment: unknown augmentation {kind!r}; allowed: {list(AUGMENTATIONS)}")

  @classmethod
  def from_config(cls, config) -> "Augment | None":
    kind = config.learner.get("augment", "none")
    if kind == "none":
      return None
    cls.validate(config)
    return cls(kind)
