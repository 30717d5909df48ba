"""Image augmentation of learner batches (DrQ, Kostrikov et al. 2021), pure and jit-able.

`random_shift` pads each image by `pad` pixels replicating its edges and crops
it back to its size at a random offset: an integer shift of up to ±pad pixels
in each direction, drawn per sample. DrQ's Atari setting is pad 4 on 84×84.
`augment_batch` shifts `obs` and `next_obs` of a replay batch with independent
shifts (per sample and between the two), as DrQ augments s and s' separately.
"""

import jax
import jax.numpy as jnp

AUGMENTATIONS = ("none", "random_shift")
DRQ_PAD = 4


def random_shift(rng: jax.Array, images: jax.Array, pad: int = DRQ_PAD) -> jax.Array:
  """[B, H, W, C] images, each shifted by its own (dy, dx) ∈ [−pad, pad]² with edge replication."""
  batch, height, width, channels = images.shape
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
  offsets = jax.random.randint(rng, (batch, 2), 0, 2 * pad + 1)
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
  raise ValueError(f"unknown augmentation {kind!r}; allowed: {AUGMENTATIONS}")
