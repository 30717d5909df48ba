"""The config schema (every field, its default and meaning) and its validation.

`base_config()` is the paper-scale Double DQN (DQN Zoo "double_q" settings);
files under configs/ start from it and change a few fields. `validate` runs once,
after the command-line overrides, before anything is written: a bad value is
one `ConfigError` naming the field and what is allowed.
"""

import os

import ml_collections
from ml_collections import config_dict

from plasticity_rl.agents import dqn
from plasticity_rl.envs import atari
from plasticity_rl import augment
from plasticity_rl import checkpoint
from plasticity_rl import device_loop
from plasticity_rl import expansion
from plasticity_rl import interventions
from plasticity_rl import metrics
from plasticity_rl import networks
from plasticity_rl import recorder
from plasticity_rl import regularizers
from plasticity_rl import remedies
from plasticity_rl import surgery
from plasticity_rl import triggers


class ConfigError(ValueError):
  """A config value that cannot work; the message names the field."""


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.game = "Pong"  # One of the 57 (envpool spelling, "Pong" or "Pong-v5") or any envpool Atari task.
  c.variant = "baseline"  # Label written into every result row (sweeps set it).
  c.seed = 0  # The run's seed: network init, ε-greedy actions, replay sampling and the envs' seeds (train.env_seed).
  # Seeds trained together in this process (multi_seed.py): seeds seed … seed + num_seeds − 1, each an
  # independent agent writing WORKDIR/seed_<n>/; 1 is a plain single-seed run in WORKDIR.
  c.num_seeds = 1
  # How the learner runs the seeds: "vmap" (one jitted call over a stacked seed axis, sharded over the local
  # devices), "loop" (one jitted call per seed) or "auto": vmap on GPU/TPU, loop on CPU (docs/performance.md).
  c.seed_batching = "auto"
  c.total_frames = 200_000_000  # Emulator frames (agent steps × 4), the papers' unit.

  c.loop = ml_collections.ConfigDict()  # Where the loop runs (device_loop.py, docs/performance.md).
  # "host" (train.py: a Python iteration per agent step), "device" (K agent steps — acting, envpool's XLA step,
  # replay adds, the updates due — in one jitted scan, between cadence and intervention frames), or "auto": the
  # device path where it was measured faster (device_loop.DEVICE_FASTER_ON; so far nowhere), else the host path.
  c.loop.backend = "auto"
  c.loop.chunk_steps = 256  # Device path: agent steps per jitted call at most (one compile; shorter chunks skip).

  c.env = ml_collections.ConfigDict()
  c.env.protocol = "dqn_zoo"  # Training envs: "dqn_zoo" or "machado" (envs/atari.py).
  c.env.num_envs = 8  # Parallel envpool envs; one agent step of each per loop iteration.
  c.env.max_episode_frames = 108_000  # A training episode is cut after this many frames (30 min of play).

  c.eval = ml_collections.ConfigDict()
  c.eval.protocol = "dqn_zoo"  # Evaluation envs ("dqn_zoo" or "machado"), separate from the training envs.
  c.eval.period_frames = 1_000_000  # Evaluate every this many training frames (and at the end).
  c.eval.num_episodes = 8  # One episode on each of this many eval envs.
  c.eval.final_num_episodes = 0  # Episodes of the evaluation at total_frames (0: num_episodes), e.g. Atari 100k's 100.
  c.eval.epsilon = 0.01  # ε of the evaluation's ε-greedy policy.
  c.eval.max_episode_frames = 108_000  # An evaluation episode is cut after this many frames.
  c.eval.record_video = False  # MP4s of evaluation episodes in WORKDIR/videos/<frames>_ep<k>.mp4 (video.py).
  c.eval.video_frames = ()  # Record the first evaluation at or after each of these frame counts; (): the final one.
  c.eval.video_episodes = 1  # Episodes recorded per recorded evaluation (those of eval envs 0 … k − 1).

  c.replay = ml_collections.ConfigDict()
  c.replay.capacity = 1_000_000  # Transitions, over all envs; each 84×84 frame is stored once.
  c.replay.n_step = 1  # n of the n-step return the learner targets (rebuilt from the replay at sample time).
  c.replay.learning_starts_frames = 200_000  # Frames of acting before the first update (200k: 50k transitions).

  c.learner = ml_collections.ConfigDict()
  c.learner.optimizer = "rmsprop_dqn_zoo"  # "rmsprop_dqn_zoo" (DQN Zoo's centered RMSProp) or "adam_dopamine".
  c.learner.learning_rate = config_dict.placeholder(float)  # The optimizer's step size; None: the optimizer preset's.
  c.learner.batch_size = 32  # Transitions per gradient update.
  c.learner.gamma = 0.99  # Discount per agent step.
  c.learner.replay_ratio = 0.25  # Gradient updates per agent step (0.25: one update every 4 steps).
  c.learner.target_update_period_updates = 7_500  # Updates between target-net copies (7,500: 30k agent steps at 0.25).
  c.learner.reward_clip = 1.0  # Learner rewards clipped to ±this; 0 disables clipping.
  c.learner.double_q = True  # Double DQN's target (online net selects, target net values); False: Q-learning's max.
  # The TD loss (agents/dqn.LOSSES): "dqn_zoo" (gradient clipped to ±grad_error_bound after the batch mean, then
  # ½td²: dqn_zoo/double_q/agent.py), "huber" (mean Huber, δ = huber_delta) or "mse" (mean td², Dopamine DQN).
  c.learner.loss = "dqn_zoo"
  c.learner.grad_error_bound = config_dict.placeholder(float)  # loss "dqn_zoo" only; None: DQN Zoo's 1/32.
  c.learner.huber_delta = config_dict.placeholder(float)  # loss "huber" only; None: δ = 1.
  c.learner.adaptive_replay_ratio = triggers.adaptive_replay_ratio_config()  # Ma et al. 2023; off by default.
  # Learner-batch augmentation (augment.py): "none", "random_shift" (DrQ: pad 4, random crop) or "drq_dopamine"
  # (Dopamine's Atari-100k DrQ: crop offsets 0–7 and an intensity scale).
  c.learner.augment = "none"

  c.exploration = ml_collections.ConfigDict()
  c.exploration.epsilon_start = 1.0  # Training ε until learning starts, then decayed linearly …
  c.exploration.epsilon_end = 0.01  # … to this, reached after decay_frames, and kept.
  c.exploration.decay_frames = 4_000_000  # Frames of the linear ε decay, counted after learning starts (4M: 1M steps).

  c.network = ml_collections.ConfigDict()
  c.network.width = 1.0  # Multiplies every hidden layer's width.
  c.network.hidden = 512  # Units of the head's hidden layer (before the width multiplier).
  c.network.activation = "relu"  # "relu", "leaky_relu" or "crelu".
  c.network.layer_norm = False  # LayerNorm after every hidden layer.
  c.network.crelu_halve_width = True  # With crelu: hidden layers get half the units (the same output width).
  c.network.dueling = False  # Dueling head (value + advantage − mean advantage), as Dopamine's FullRainbowNetwork.
  # networks.INITIALIZERS: "lecun_normal" (flax), "xavier_uniform" (Dopamine), "dqn_zoo" (dqn_zoo/networks.py).
  c.network.initializer = "dqn_zoo"
  c.network.shared_output_bias = True  # One bias for all Q-values: DQN Zoo's double_q network.
  c.network.conv_padding = "VALID"  # "VALID" (Nature CNN, DQN Zoo) or "SAME" (flax's default: Dopamine's nets).

  c.injection = ml_collections.ConfigDict()  # Plasticity injection (surgery.py).
  c.injection.frames = ()  # Frames at which to inject, e.g. (50_000_000,); any number, increasing.
  c.injection.target = "head"  # "head", "last_k:K", or layer names forming a suffix ("dense_1").
  c.injection.hidden = ()  # Growth: units of the fresh branch's hidden layers, one per injection; () keeps widths.
  c.injection.reset_optimizer = False  # Re-init the optimizer statistics of the injected slot.
  c.injection.freeze_encoder = False  # Ablation: also freeze every layer before the branch.
  c.injection.all_trainable = False  # Ablation: h_θ, θ'₁ and θ'₂ all receive gradients (docs/interventions.md).
  c.injection.stop_frozen_grad = False  # Ablation: no gradient from the frozen heads into the layers before them.
  c.injection.trigger = triggers.trigger_config()  # Inject when a plasticity metric crosses a threshold; off.

  c.metrics = metrics.metrics_config()  # Plasticity metrics on a replay probe batch (metrics.py, docs/metrics.md).

  c.reset = remedies.reset_config()  # Resets of the last layers (remedies.py); off by default.
  c.redo = remedies.redo_config()  # ReDo: recycling dormant units; off by default.
  c.shrink_perturb = remedies.shrink_perturb_config()  # Shrink and perturb; off by default.
  c.regularizer = regularizers.regularizer_config()  # L2 / L2-init loss terms; off by default.
  c.expansion = expansion.expansion_config()  # Neuroplastic-Expansion-style growth and pruning; off by default.

  c.checkpoint = ml_collections.ConfigDict()  # workdir/checkpoints (checkpoint.py); a re-run resumes.
  c.checkpoint.period_frames = 1_000_000  # Save every this many frames (0: only at the end and on SIGTERM/SIGINT).
  c.checkpoint.max_to_keep = 2  # Newest checkpoints kept; ≥ 2 keeps a fallback if the newest is unreadable.
  c.checkpoint.save_replay = True  # Include the replay (~7 GB at 1M transitions); False: a resume refills it.
  c.checkpoint.async_save = True  # Write in the background; the loop waits only for the copy to host.

  # Reincarnation: start this (new) run from an agent another run saved. Named `path`, not `from`:
  # config_flags parses `--config.reincarnate.from=…` as Python, where `from` is a keyword (SyntaxError).
  c.reincarnate = ml_collections.ConfigDict()
  # A workdir or workdir/checkpoints/<frames> ("{seed}": each seed's number, "{game}": the game); "": off.
  c.reincarnate.path = ""
  c.reincarnate.load = "params"  # "params", "params+optimizer", "params+optimizer+replay" or "all" (+ counters).

  c.log = ml_collections.ConfigDict()
  c.log.period_frames = 100_000  # Training scalars and the progress line.
  c.log.tensorboard = True  # Also write the scalars as TensorBoard events in WORKDIR/tb/.
  c.log.wandb = False  # Also log every scalar to Weights & Biases, a run in WORKDIR/wandb/ (pip install wandb).
  c.log.wandb_project = "plasticity_rl"  # The W&B project.
  c.log.wandb_mode = "offline"  # "offline" (sync later with `wandb sync WORKDIR/wandb/offline-run-*`), "online".
  c.log.learning_curve = True  # learning_curve.png in the workdir at the end.
  for section, defaults in interventions.config_sections().items():  # Sections the interventions own (off).
    if section not in c:
      c[section] = defaults
  return c


SCALES = ("paper", "cpu", "smoke")
SEED_BATCHING = ("auto", "vmap", "loop")


def apply_scale(config: ml_collections.ConfigDict, scale: str | None) -> ml_collections.ConfigDict:
  """Shrinks a paper-scale config: "paper" (None) leaves it, "cpu" is the README's ~5-minute
  demo on 2 cores, "smoke" a seconds-long run for tests."""
  if scale in (None, "", "paper"):
    return config
  if scale == "cpu":
    # ~5 minutes on 2 CPU cores: a narrower network, a lower replay ratio, 3-step returns.
    config.game = "Breakout"
    config.total_frames = 400_000
    config.env.num_envs = 8
    config.replay.capacity = 100_000
    config.replay.n_step = 3
    config.replay.learning_starts_frames = 20_000
    config.learner.optimizer = "adam_dopamine"
    config.learner.learning_rate = 2.5e-4
    config.learner.loss = "huber"  # Dopamine's Huber loss (δ = 1), with its Adam preset.
    config.learner.replay_ratio = 0.125
    config.learner.target_update_period_updates = 500
    config.exploration.decay_frames = 150_000
    config.exploration.epsilon_end = 0.05
    config.network.width = 0.5
    # The demo's network as before the presets followed DQN Zoo's network too (flax's init, a bias per
    # action), so its documented results still hold; the demo is no paper's setup.
    config.network.initializer = "lecun_normal"
    config.network.shared_output_bias = False
    config.eval.period_frames = 100_000
    config.eval.num_episodes = 4
    config.eval.epsilon = 0.05
    config.log.period_frames = 20_000
    config.checkpoint.period_frames = 100_000
    config.metrics.period_frames = 20_000
    return config
  if scale == "smoke":
    config.game = "Pong"
    config.total_frames = 4_000
    config.env.num_envs = 4
    config.env.max_episode_frames = 400  # Short episodes, so that training episodes end too.
    config.replay.capacity = 4_000
    config.replay.learning_starts_frames = 1_000
    config.learner.batch_size = 8
    config.learner.target_update_period_updates = 20
    config.exploration.decay_frames = 2_000
    config.network.width = 0.25
    config.network.hidden = 64
    config.eval.period_frames = 2_000
    config.eval.num_episodes = 2
    config.eval.max_episode_frames = 400
    config.log.period_frames = 1_000
    config.checkpoint.period_frames = 1_000
    config.metrics.period_frames = 1_000
    config.metrics.probe_size = 32
    return config
  raise ValueError(f"unknown scale {scale!r}; allowed: {SCALES}")


def _fail(field: str, message: str):
  raise ConfigError(f"config.{field}: {message}")


def _positive(c, *fields: str):
  for field in fields:
    value = eval_field(c, field)
    if not value > 0 or value == float("inf"):
      _fail(field, f"must be a finite number > 0, got {value!r}")


def eval_field(c, field: str):
  for part in field.split("."):
    c = c[part]
  return c


def _variants_module():
  """configs/variants.py of the checkout this package runs from, or None (an installed package has none)."""
  from plasticity_rl import cli  # pylint: disable=g-import-not-at-top
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "variants.py")
  if not os.path.exists(path):
    return None
  return cli.load_file(path, "plasticity_rl_configs_variants")


def _same(a, b) -> bool:
  if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
    return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
  return a == b


PAPER_FRAMES = 200_000_000  # The scale at which configs/variants.py states its frame counts.


def check_variant_label(c: ml_collections.ConfigDict, variants=None) -> None:
  """A label that names a sweep variant (configs/variants.py) must describe the run, so that
  `--config.variant=inject@2k` on a plain run cannot label a baseline as an injection run.

  Every field the variant sets must have its value here. Its numbers are stated at paper scale (200M frames): a
  run of another length (the :cpu/:smoke scales of configs/compare.py and configs/expansion.py) may rescale
  them (frame counts, periods, batch counts), but must still set them (a value other than the default); its
  switches and names (booleans, strings) must match exactly. Labels that name no variant (e.g. a preset's
  own name) are free text.
  """
  variants = variants or _variants_module()
  if variants is None:
    return
  try:
    overrides = variants.get_variant(c.variant)
  except ValueError:
    return
  defaults, wrong = base_config(), []
  for field, value in overrides.items():
    ours = eval_field(c, field)
    numeric = lambda v: (isinstance(v, (int, float)) and not isinstance(v, bool)) or (
        isinstance(v, (list, tuple)) and all(numeric(x) for x in v))
    scaled = c.total_frames != PAPER_FRAMES and numeric(value)
    if scaled:
      default = eval_field(defaults, field)
      if _same(ours, default) and not _same(value, default):
        wrong.append(f"{field} (this run: the default {ours!r})")
    elif not _same(ours, value):
      wrong.append(f"{field}={value!r} (this run: {ours!r})")
  if wrong:
    _fail("variant", f"{c.variant!r} is the sweep variant that sets {', '.join(wrong)}: set those fields too, "
          "or give the run another label")


def _backend(c: ml_collections.ConfigDict) -> str:
  """config.loop.backend resolved ("host" or "device"); ConfigError naming the field when unknown."""
  try:
    return device_loop.resolve_backend(c.loop.backend)
  except ValueError as e:
    _fail("loop.backend", str(e))


def validate_loop(c: ml_collections.ConfigDict) -> None:
  """config.loop: the device path's limits, each refused with the field named."""
  if _backend(c) == "host":
    return
  if c.loop.chunk_steps < 1:
    _fail("loop.chunk_steps", f"must be ≥ 1, got {c.loop.chunk_steps!r}")
  if c.num_seeds > 1 and c.seed_batching == "vmap":
    _fail("seed_batching", "'vmap' has no device path (envpool's XLA step has no batching rule): the device path "
          "runs the seeds one after another; use seed_batching='loop' or 'auto', or loop.backend='host'")
  sampler = device_loop.host_only_sampler(c)
  if sampler:
    _fail("loop.backend", f"{sampler} replaces the learner's replay sampler, which the device path does not run: "
          "use loop.backend='host'")


def _inactive(c: ml_collections.ConfigDict) -> list[tuple[tuple[str, ...], str]]:
  """The (fields or sections, reason) that compute nothing in config c (see `refuse_inactive`)."""
  schedule = lambda s: bool(s.frames) or s.period_frames > 0
  reg = c.regularizer
  out = [
      (not c.learner.adaptive_replay_ratio.enabled, ("learner.adaptive_replay_ratio",),
       "learner.adaptive_replay_ratio.enabled is False"),
      (not c.injection.trigger.metric, ("injection.trigger",), "injection.trigger.metric is empty"),
      (not c.injection.frames and not c.injection.trigger.metric,
       ("injection.target", "injection.hidden", "injection.reset_optimizer", "injection.freeze_encoder",
        "injection.all_trainable", "injection.stop_frozen_grad"),
       "no injection is scheduled (injection.frames and injection.trigger.metric are empty)"),
      (c.network.activation != "crelu", ("network.crelu_halve_width",), "network.activation is not 'crelu'"),
      (reg.kind == "none", ("regularizer",), "regularizer.kind is 'none'"),
      (reg.schedule != "incremental", ("regularizer.start_coef", "regularizer.ramp_frames"),
       "regularizer.schedule is not 'incremental'"),
      (reg.schedule != "periodic", ("regularizer.on_frames", "regularizer.off_frames"),
       "regularizer.schedule is not 'periodic'"),
      (not c.expansion.enabled, ("expansion",), "expansion.enabled is False"),
      (not c.reincarnate.path, ("reincarnate.load",), "reincarnate.path is empty"),
      (not c.eval.record_video, ("eval.video_frames", "eval.video_episodes"), "eval.record_video is False"),
      (not c.log.wandb, ("log.wandb_project", "log.wandb_mode"), "log.wandb is False"),
      (_backend(c) == "host", ("loop.chunk_steps",), f"loop.backend {c.loop.backend!r} runs the host path"),
  ]
  out.extend(interventions.inactive(c))  # The sections the interventions own.
  for name in ("reset", "redo", "shrink_perturb"):
    section = c[name]
    out.append((not schedule(section), tuple(f"{name}.{k}" for k in section if k not in ("frames", "period_frames")),
                f"{name} is not scheduled ({name}.frames is empty and {name}.period_frames is 0)"))
  return [(fields, why) for off, fields, why in out if off]


def inactive_paths(c: ml_collections.ConfigDict) -> set[str]:
  """Every leaf field (dotted path) that computes nothing in config c: the fields of `_inactive`, sections
  expanded (their switch excepted). A resumed run may differ from its config.json only there (workdir.py)."""
  out = set()
  for fields, why in _inactive(c):
    switch = why.split(" ")[0].rpartition(".")[2]
    for field in fields:
      value = eval_field(c, field)
      if isinstance(value, ml_collections.ConfigDict):
        out.update(f"{field}.{k}" for k in value if k != switch)
      else:
        out.add(field)
  return out


def refuse_inactive(c: ml_collections.ConfigDict, defaults: ml_collections.ConfigDict | None = None) -> None:
  """ConfigError naming the first field set away from its default (base_config) where it computes nothing."""
  defaults = defaults or base_config()
  for fields, why in _inactive(c):
    for field in fields:
      value, default = eval_field(c, field), eval_field(defaults, field)
      if isinstance(value, ml_collections.ConfigDict):
        switch = why.split(" ")[0].rpartition(".")[2]  # The field the reason names, e.g. "enabled".
        changed = [k for k in value if k != switch and not _same(value[k], default.get(k))]
        if changed:
          _fail(f"{field}.{changed[0]}", f"{value[changed[0]]!r} has no effect while {why}: unset it, or turn it on")
      elif not _same(value, default):
        _fail(field, f"{value!r} has no effect while {why}: unset it, or turn it on")


def validate(c: ml_collections.ConfigDict) -> None:
  """Raises ConfigError on the first impossible value."""
  try:
    c.game = atari.resolve_game(c.game)
  except ValueError as e:
    _fail("game", str(e))
  _positive(c, "total_frames", "env.num_envs", "env.max_episode_frames", "eval.period_frames",
            "eval.num_episodes", "eval.max_episode_frames", "replay.capacity", "replay.n_step",
            "learner.batch_size", "learner.replay_ratio", "learner.target_update_period_updates",
            "network.width", "network.hidden", "log.period_frames")
  for field in ("env.protocol", "eval.protocol"):
    if eval_field(c, field) not in atari.PROTOCOLS:
      _fail(field, f"unknown protocol {eval_field(c, field)!r}; allowed: {sorted(atari.PROTOCOLS)}")
  if c.env.protocol != c.eval.protocol:  # The action sets may differ (minimal vs full): one network acts in both.
    train_actions, eval_actions = (atari.num_actions(c.game, p) for p in (c.env.protocol, c.eval.protocol))
    if train_actions != eval_actions:
      _fail("eval.protocol", f"{c.eval.protocol!r} gives {c.game} {eval_actions} actions but env.protocol "
            f"{c.env.protocol!r} gives {train_actions}: use protocols with one action set")
  if c.learner.optimizer not in dqn.OPTIMIZERS:
    _fail("learner.optimizer", f"unknown optimizer {c.learner.optimizer!r}; allowed: {list(dqn.OPTIMIZERS)}")
  if c.network.activation not in networks.ACTIVATIONS:
    _fail("network.activation", f"unknown activation {c.network.activation!r}; allowed: {list(networks.ACTIVATIONS)}")
  if c.learner.learning_rate is not None and not c.learner.learning_rate > 0:
    _fail("learner.learning_rate", f"must be > 0 (or None for the preset), got {c.learner.learning_rate!r}")
  if not 0.0 <= c.learner.gamma <= 1.0:
    _fail("learner.gamma", f"must be in [0, 1], got {c.learner.gamma!r}")
  if c.learner.reward_clip < 0:
    _fail("learner.reward_clip", f"must be ≥ 0 (0 disables clipping), got {c.learner.reward_clip!r}")
  for field in ("exploration.epsilon_start", "exploration.epsilon_end", "eval.epsilon"):
    if not 0.0 <= eval_field(c, field) <= 1.0:
      _fail(field, f"must be in [0, 1], got {eval_field(c, field)!r}")
  if c.exploration.decay_frames < 0 or c.replay.learning_starts_frames < 0:
    _fail("exploration.decay_frames" if c.exploration.decay_frames < 0 else "replay.learning_starts_frames",
          "must be ≥ 0")
  if c.replay.capacity < c.env.num_envs * (c.replay.n_step + 4):
    _fail("replay.capacity", f"must hold at least num_envs × (n_step + 4) = "
          f"{c.env.num_envs * (c.replay.n_step + 4)} transitions, got {c.replay.capacity}")
  if c.learner.batch_size > c.replay.capacity:
    _fail("learner.batch_size", f"must be ≤ replay.capacity ({c.replay.capacity}), got {c.learner.batch_size}")
  min_frames = 4 * c.env.num_envs * (c.replay.n_step + 4)
  if c.replay.learning_starts_frames < min_frames:
    _fail("replay.learning_starts_frames", f"must be ≥ {min_frames} (a few steps of every env must be stored "
          f"before the first sample), got {c.replay.learning_starts_frames}")
  try:
    surgery.injection_plan(c, networks.make_network(c.network, num_actions=1))
  except ValueError as e:
    _fail("injection", str(e))
  if c.learner.augment not in augment.AUGMENTATIONS:
    _fail("learner.augment", f"unknown augmentation {c.learner.augment!r}; allowed: {list(augment.AUGMENTATIONS)}")
  for check in (remedies.validate, regularizers.validate, expansion.validate, interventions.validate):  # Their messages start with the field's name.
    try:
      check(c)
    except ValueError as e:
      raise ConfigError(f"config.{e}") from None
  if c.learner.loss not in dqn.LOSSES:
    _fail("learner.loss", f"unknown loss {c.learner.loss!r}; allowed: {list(dqn.LOSSES)}")
  for field, loss in (("huber_delta", "huber"), ("grad_error_bound", "dqn_zoo")):
    value = c.learner[field]
    if value is not None and c.learner.loss != loss:
      _fail(f"learner.{field}", f"is used only with learner.loss={loss!r} (this run's loss is "
            f"{c.learner.loss!r}): unset it or set the loss")
    if value is not None and not value > 0:
      _fail(f"learner.{field}", f"must be > 0, got {value!r}")
  if c.network.initializer not in networks.INITIALIZERS:
    _fail("network.initializer", f"unknown {c.network.initializer!r}; allowed: {list(networks.INITIALIZERS)}")
  if c.network.conv_padding not in networks.PADDINGS:
    _fail("network.conv_padding", f"unknown {c.network.conv_padding!r}; allowed: {list(networks.PADDINGS)}")
  if c.eval.final_num_episodes < 0:
    _fail("eval.final_num_episodes", f"must be ≥ 0 (0: eval.num_episodes), got {c.eval.final_num_episodes!r}")
  try:  # Their messages start with "config.<field>".
    metrics.validate_metrics(c)
    triggers.validate_adaptive_replay_ratio(c)
    adaptive = c.learner.adaptive_replay_ratio
    names = None
    if c.injection.trigger.metric or adaptive.enabled:  # The names need a traced (never run) metrics call.
      names = metrics.metric_names(dqn.make_agent(c, num_actions=2))
    triggers.validate_trigger(c, names)
    if adaptive.enabled and adaptive.metric not in names:
      raise ValueError(f"config.learner.adaptive_replay_ratio.metric: unknown metric {adaptive.metric!r}; "
                       f"known: {sorted(names)}")
  except ValueError as e:
    raise ConfigError(str(e)) from None
  adaptive = c.learner.adaptive_replay_ratio
  if adaptive.enabled and c.learner.replay_ratio != adaptive.high:
    _fail("learner.replay_ratio", f"{c.learner.replay_ratio!r} is not used while learner.adaptive_replay_ratio is "
          f"enabled (the ratio runs from its low {adaptive.low!r} to its high {adaptive.high!r}): set it to the high "
          "value or turn the adaptive replay ratio off")
  if adaptive.enabled and c.regularizer.kind != "none" and c.regularizer.schedule != "constant":
    _fail("regularizer.schedule", f"{c.regularizer.schedule!r} counts its frames from updates at a fixed replay "
          "ratio, which learner.adaptive_replay_ratio changes: use the constant schedule with it")
  if c.num_seeds < 1:
    _fail("num_seeds", f"must be ≥ 1, got {c.num_seeds!r}")
  if not 0 <= c.seed <= 2**32 - c.num_seeds:  # NumPy's and envpool's seeds are unsigned 32-bit.
    _fail("seed", f"must be in [0, 2**32 - num_seeds], got {c.seed!r}")
  if c.seed_batching not in SEED_BATCHING:
    _fail("seed_batching", f"unknown {c.seed_batching!r}; allowed: {list(SEED_BATCHING)}")
  validate_loop(c)
  if c.replay.learning_starts_frames >= c.total_frames:
    _fail("replay.learning_starts_frames", f"must be < total_frames ({c.total_frames}): no update would run")
  if c.checkpoint.period_frames < 0:
    _fail("checkpoint.period_frames", f"must be ≥ 0 (0: only at the end), got {c.checkpoint.period_frames!r}")
  if c.checkpoint.max_to_keep < 1:
    _fail("checkpoint.max_to_keep", f"must be ≥ 1, got {c.checkpoint.max_to_keep!r}")
  if c.reincarnate.load not in checkpoint.LOADS:
    _fail("reincarnate.load", f"unknown {c.reincarnate.load!r}; allowed: {list(checkpoint.LOADS)}")
  validate_outputs(c)
  check_variant_label(c)
  refuse_inactive(c)
  for path in sorted({checkpoint.source_path(c, seed) for seed in range(c.seed, c.seed + c.num_seeds)}):
    if path and not os.path.isdir(path):
      templates = [f"{t} is {what}" for t, what in (("{seed}", "each seed"), ("{game}", "the game"))
                   if t in c.reincarnate.path]
      _fail("reincarnate.path", f"no such directory {path!r} (a workdir or a checkpoints/<frames> dir"
            f"{'; ' + ', '.join(templates) if templates else ''})")
    if path:
      check_reincarnated_network(c, path)


WANDB_MODES = ("offline", "online")


def validate_outputs(c: ml_collections.ConfigDict) -> None:
  """eval's video fields and log's W&B fields (switched off: refuse_inactive)."""
  if c.eval.record_video:
    final = c.eval.final_num_episodes or c.eval.num_episodes
    if not 1 <= c.eval.video_episodes <= min(c.eval.num_episodes, final):
      _fail("eval.video_episodes", f"must be in [1, {min(c.eval.num_episodes, final)}] (the episodes of an "
            f"evaluation), got {c.eval.video_episodes!r}")
    for frames in c.eval.video_frames:
      if not 0 < frames <= c.total_frames:
        _fail("eval.video_frames", f"{frames!r} is not in (0, total_frames = {c.total_frames}]")
  if c.log.wandb:
    if c.log.wandb_mode not in WANDB_MODES:
      _fail("log.wandb_mode", f"unknown {c.log.wandb_mode!r}; allowed: {list(WANDB_MODES)}")
    if not c.log.wandb_project:
      _fail("log.wandb_project", "must name a W&B project, got ''")
    try:
      recorder.import_wandb()
    except ImportError as e:
      raise ConfigError(str(e)) from None


def _source_config(path: str) -> dict | None:
  """The config.json of the run a reincarnate.path points into (its workdir, or workdir/checkpoints/<frames>)."""
  import json  # pylint: disable=g-import-not-at-top
  for candidate in (path, os.path.dirname(os.path.dirname(os.path.normpath(path)))):
    config_path = os.path.join(candidate, "config.json")
    if os.path.exists(config_path):
      try:
        with open(config_path) as f:
          return json.load(f)
      except (OSError, ValueError):
        return None
  return None


def check_reincarnated_network(c: ml_collections.ConfigDict, path: str) -> None:
  """A reincarnated agent keeps the saved network: a network field that differs from the source run's (at
  `path`) would be recorded in config.json but not trained (the loaded params fix the shapes), so it is refused."""
  source = _source_config(path)
  if source is None or "network" not in source:
    return
  for field, value in c.network.items():
    if field in source["network"] and not _same(source["network"][field], value):
      _fail(f"network.{field}", f"{value!r}, but the reincarnated agent ({path}) has "
            f"{source['network'][field]!r}: a reincarnated run keeps the saved network (drop the override)")
