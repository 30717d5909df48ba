"""Hare & Tortoise (Lee, Cho, Kim, Kim, Min, Choo, Lyle, ICML 2024): a slow EMA network, the fast one reset to it.

Sources read (the reference store, 2026-12-01):
- the paper, "Slow and Steady Wins the Race: Maintaining Plasticity with Hare and Tortoise Networks"
  (PMLR v235, lee24d.pdf; arXiv 2406.02596), its abstract and introduction: the Hare network "rapidly adapts
  to new information" (trained by gradient descent), the Tortoise network "gradually integrates knowledge"
  (an exponential moving average of the Hare), and the Hare is periodically reinitialized to the Tortoise's
  weights; it "improves advanced reinforcement learning algorithms on the Atari-100k benchmark". The store
  holds only the paper's beginning: its RL section (which agent, reset period, which network acts) was not
  read.
- the authors' code, dojeon-ai/Hare-Tortoise (github.com/dojeon-ai/hare-tortoise, supervised warm-start and
  continual experiments only, no RL code): src/trainers/base.py after every optimizer step
  `slow = ema * slow + (1 - ema) * fast` over the parameters (and buffers), and after every
  `hare_tortoise.reset_every`-th epoch `fast.data = slow.data`; the optimizer is not re-initialized at a
  reset; `test()` evaluates both networks (`test_acc*` the hare, `test_target_acc*` the tortoise).
  configs/trainer/base.yaml: `ema: 0.0`, `hare_tortoise.reset_every: -1` (off);
  scripts/paper/warm_start_aug/hare_tortoise.sh: `trainer.ema=0.999`, `reset_every=10` (epochs).

Here, on the Double DQN learner (config.hare_tortoise, off by default):
- hare = the online network's trainable params (`state.params`, trained as before); tortoise = a copy of them
  at init, in `state.intervention_state["hare_tortoise"]["tortoise"]` (checkpointed with the state).
- every update, after the optimizer step (`after_update`): tortoise ← ema · tortoise + (1 − ema) · hare,
  `ema` = 0.999 (the code's script).
- at scheduled frames (`frames`, and every `period_frames` from `start_frames`; a surgery logged as a
  "hare_tortoise" event): hare ← tortoise. Optimizer statistics are kept (as in the code). The target network
  is not touched: it takes the reset hare at its next periodic copy (the code has no target network; the
  paper's RL setting was not read). `period_frames` (1M) has no published DQN value: a placeholder to tune
  (the code resets every 10 epochs of supervised training).
- acting and evaluation (`acting_params`): `act_with` = "hare" (default: the network trained and reset, the
  code's `test_acc`) or "tortoise" (its `test_target_acc`); the loop acts and evaluates with
  `agent.acting_params(state)`.
- The released code writes `fast.data = slow.data`, so right after a reset both names share one tensor and
  the next optimizer step moves the tortoise too; we copy (the paper's description), so the tortoise moves
  only by its EMA.
- Not combined with plasticity injection or expansion (config errors): both change the trainable tree the
  tortoise mirrors; nor, for now, with reincarnation (the tortoise would start from a fresh init). Reset, ReDo and shrink-and-perturb change the hare only; the tortoise keeps averaging.
"""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections

from plasticity_rl import params_tree
from plasticity_rl.interventions import base
from plasticity_rl.interventions import scheduling

NAME = "hare_tortoise"
ACT_WITH = ("hare", "tortoise")


def tortoise(state):
  """The tortoise's trainable params (the tree of `params_tree.trainable(state.params)`)."""
  return state.intervention_state[NAME]["tortoise"]


def ema_update(tortoise_params, hare_params, ema: float):
  """ema · tortoise + (1 − ema) · hare, leaf by leaf."""
  return jax.tree.map(lambda t, h: ema * t + (1.0 - ema) * h, tortoise_params, hare_params)


def reset_hare(state, rng=None, batch=None):
  """The surgery: the online (hare) trainable params ← the tortoise's; everything else kept."""
  del rng, batch
  return state.replace(params=params_tree.with_trainable(state.params, tortoise(state)))


@base.register(NAME)
@dataclasses.dataclass(frozen=True)
class HareTortoise(base.Hooks):
  """The tortoise's EMA every update, the hare's resets at `frames`, acting with `act_with`."""

  section = NAME

  ema: float = 0.999
  frames: tuple[int, ...] = ()  # Reset frames, resolved (explicit ∪ periodic).
  act_with: str = "hare"

  @classmethod
  def config_section(cls) -> ml_collections.ConfigDict:
    """Fields of config.hare_tortoise, off (fields.meanings reads their comments here)."""
    c = ml_collections.ConfigDict()
    c.enabled = False  # The tortoise (an EMA of the online params) and the hare's resets to it.
    c.ema = 0.999  # The tortoise's EMA rate per update (the authors' script: 0.999).
    c.frames = ()  # Explicit frames at which the hare is reset to the tortoise.
    c.period_frames = 1_000_000  # > 0: also a reset every multiple of this many frames; 0: none. Unverified.
    c.start_frames = 0  # Periodic resets start here.
    c.act_with = "hare"  # The network that acts and is evaluated: "hare" (the online params) or "tortoise".
    return c

  @classmethod
  def validate(cls, config) -> None:
    if NAME not in config or not config[NAME].enabled:
      return
    c = config[NAME]
    if not 0.0 <= c.ema < 1.0:
      raise ValueError(f"{NAME}.ema: must be in [0, 1), got {c.ema!r}")
    if c.act_with not in ACT_WITH:
      raise ValueError(f"{NAME}.act_with: unknown {c.act_with!r}; allowed: {list(ACT_WITH)}")
    if c.period_frames < 0 or c.start_frames < 0:
      raise ValueError(f"{NAME}.period_frames/start_frames: must be ≥ 0 (period 0 = no periodic reset), "
                       f"got {c.period_frames!r}/{c.start_frames!r}")
    scheduling.checked_frames(config, NAME, what="reset")
    if "injection" in config and (config.injection.frames or config.injection.trigger.metric):
      raise ValueError(f"{NAME}.enabled: not combined with plasticity injection (it changes the trainable "
                       "params the tortoise averages)")
    if "expansion" in config and config.expansion.enabled:
      raise ValueError(f"{NAME}.enabled: not combined with expansion (its masks act on the hare only)")
    if "reincarnate" in config and config.reincarnate.path:
      raise ValueError(f"{NAME}.enabled: not combined with reincarnation yet (a source saved without a tortoise "
                       "would leave this run's tortoise at a fresh init, and the first reset would undo the agent)")

  @classmethod
  def inactive(cls, config):
    if NAME not in config:
      return []
    return [(not config[NAME].enabled, (NAME,), f"{NAME}.enabled is False")]

  @classmethod
  def from_config(cls, config) -> "HareTortoise | None":
    if NAME not in config or not config[NAME].enabled:
      return None
    cls.validate(config)
    c = config[NAME]
    frames = scheduling.schedule_frames(scheduling.checked_frames(config, NAME, what="reset"),
                                        int(c.period_frames), int(config.total_frames), int(c.start_frames))
    return cls(ema=float(c.ema), frames=frames, act_with=c.act_with)

  def init_state(self, state):
    own = {"tortoise": jax.tree.map(jnp.copy, params_tree.trainable(state.params))}
    return state.replace(intervention_state={**(state.intervention_state or {}), NAME: own})

  def after_update(self, state, info):
    hare = params_tree.trainable(state.params)
    own = {**state.intervention_state[NAME], "tortoise": ema_update(tortoise(state), hare, self.ema)}
    return state.replace(intervention_state={**state.intervention_state, NAME: own}), info

  def acting_params(self, state, params):
    if self.act_with == "tortoise":
      return params_tree.with_trainable(params, tortoise(state))
    return params

  def surgeries(self, config, agent):
    del config, agent
    return [(f, reset_hare) for f in self.frames]
