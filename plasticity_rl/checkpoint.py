"""Checkpoints with orbax: atomic async saves, resume, reincarnation of saved agents.

One checkpoint is an orbax step directory `workdir/checkpoints/<frames>/`:

    meta/       JSON: the loop's counters and cursors ("loop"), the RNG keys (the
                loop's and the TrainState's), the replay's scalars, the tree structure
                of every TrainState tree (dicts, tuples as lists, leaves as
                "float32[8,8,4,8]") and of the optimizer state, and the config.
    state/      the TrainState's trees: params and target params with their current
                (injected) structure, θ₀ (init_params), num_updates, and expansion's unit
                masks when the state has them (every load level takes them with the params).
    opt_state/  the optimizer state (optax's structure).
    replay/     the replay's stored frames, actions, rewards and flags (unless
                config.checkpoint.save_replay is False).

Orbax writes a step into a temporary directory and renames it when complete,
so a kill leaves either a whole step or none (temporaries are removed at the
next start). Steps beyond `max_to_keep` are renamed into `checkpoints/todelete/`
and removed before the next save, so a kill never leaves a half-deleted step.

A CRC-32 of every saved array is kept in meta/ (state/, opt_state/ and, since
checksums.replay was added, replay/) and checked on restore: a step whose bytes
differ is unreadable, like a truncated one (checkpoints saved before the replay
checksum still restore; their replay is not checked). An empty replay (a run
stopped before its first step) is not saved: the resume starts one, as it was.

Restore rebuilds the trees exactly: the params from their JSON structure (an
injected or grown tree comes back as it was saved), the optimizer state as the
optimizer's abstract init on the restored trainable params; the restored trees
have the saved `jax.tree.structure`, so the jitted update is not re-traced. A
step that cannot be read (truncated or missing files) is skipped with a one-line
warning in favour of the previous one; if none can be read, `CheckpointError`
names the directory and each step's error, on one line (each error's full
text is logged at debug level).

Saves are asynchronous: `save` returns once the device arrays are copied to
host and the replay's numpy views deep-copied (orbax's numpy handler copies
host arrays before returning; tests/test_checkpoint.py checks that mutating
the buffer after `save` leaves the checkpoint intact). The write to disk then
runs in the background; the next `save` or `wait` waits for it, and raises
`SaveError` (the step, the newest step saved before it, and for a full disk
the free space) if it failed; the steps saved before are untouched.

Resume: envpool cannot save its emulators, so a resumed run starts fresh
episodes. The replay's last entry before the checkpoint is then followed by a
`first` entry, which `ReplayBuffer.add` turns into a truncation (the entry is
marked `last`: bootstrapped, not terminal); the episodes in progress at the
checkpoint are not logged.

Reincarnation (Agarwal et al. 2022) starts a new run from a saved agent:
`reincarnate.load` picks what is loaded (LOADS), the new config does the rest.
"""

import dataclasses
import json
import logging as std_logging
import os
import re
import shutil
import sys
from typing import Any
import zlib

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

from plasticity_rl import networks
from plasticity_rl import params_tree
from plasticity_rl import workdir as workdir_lib
from plasticity_rl.agents import dqn

# What `reincarnate.load` can take from a saved agent; each includes the previous.
LOADS = ("params", "params+optimizer", "params+optimizer+replay", "all")
REPLAY_ARRAYS = ("frames", "actions", "rewards", "flags")
_COUNTERS = ("num_updates",)  # TrainState fields that "all" loads and the other LOADS keep fresh.
_TODELETE = "todelete"
_LEAF = re.compile(r"^(\w+)\[([\d,]*)\]$")


def quiet_orbax_logs() -> None:
  """Drops orbax's INFO lines (dozens per save), read-only notices and its logged tracebacks (a failed save
  or read is reported once, by SaveError / the restore warning) from absl logging, and the unraisable
  "Event loop is closed" tracebacks that a failed read's leftover TensorStore callbacks print."""
  absl_logger = std_logging.getLogger("absl")
  if not any(isinstance(f, _QuietOrbax) for f in absl_logger.filters):
    absl_logger.addFilter(_QuietOrbax())
  if not isinstance(sys.unraisablehook, _QuietUnraisable):
    sys.unraisablehook = _QuietUnraisable(sys.unraisablehook)


class _QuietOrbax(std_logging.Filter):

  def filter(self, record):
    if f"{os.sep}orbax{os.sep}" not in record.pathname:
      return True
    if record.exc_info or record.levelno >= std_logging.ERROR:
      return False
    return record.levelno >= std_logging.WARNING and "read only" not in str(record.msg).replace("_", " ")


_LEFTOVER_CALLBACK_ERRORS = ("Event loop is closed", "cannot schedule new futures after")


class _QuietUnraisable:
  """sys.unraisablehook that drops (to debug level) the RuntimeErrors of asyncio callbacks scheduled on the
  event loop of an orbax read or save that already failed and closed it; everything else goes to `previous`."""

  def __init__(self, previous):
    self.previous = previous

  def __call__(self, unraisable):
    error = unraisable.exc_value
    if isinstance(error, RuntimeError) and str(error).startswith(_LEFTOVER_CALLBACK_ERRORS):
      logging.debug("ignored after a failed checkpoint read or write: %r", error)
      return
    self.previous(unraisable)


class CheckpointError(RuntimeError):
  """No usable checkpoint, or one that does not fit the run; the message names the path."""


class SaveError(RuntimeError):
  """A save that did not complete (e.g. a full disk); `saved`: the newest step on disk before it (or None)."""

  def __init__(self, message: str, directory: str, step: int, saved: int | None):
    super().__init__(message)
    self.directory, self.step, self.saved = directory, step, saved


def describe_error(error: BaseException, limit: int = 240) -> str:
  """'Type: message' on one line, short: the innermost cause (orbax wraps TensorStore's error in a message
  that embeds the whole TensorStore spec), its first line, at most `limit` characters."""
  while error.__cause__ is not None:
    error = error.__cause__
  text = (str(error).strip().splitlines() or [""])[0]
  text = text.split(" See full TensorStore details")[0]
  line = f"{type(error).__name__}: {text}" if text else type(error).__name__
  return line if len(line) <= limit else line[:limit - 1] + "…"


# -- tree structure as JSON ------------------------------------------------------


def tree_to_json(tree) -> Any:
  """A params tree's structure as JSON: dicts stay, tuples become lists, arrays "dtype[shape]"."""
  if isinstance(tree, dict):
    return {str(k): tree_to_json(v) for k, v in tree.items()}
  if isinstance(tree, tuple):
    return [tree_to_json(v) for v in tree]
  if hasattr(tree, "shape") and hasattr(tree, "dtype"):
    return f"{jnp.dtype(tree.dtype).name}[{','.join(str(d) for d in tree.shape)}]"
  raise TypeError(f"params trees hold dicts, tuples and arrays only; got {type(tree).__name__}")


def abstract_tree(structure) -> Any:
  """The inverse of `tree_to_json`, with jax.ShapeDtypeStruct leaves."""
  if isinstance(structure, dict):
    return {k: abstract_tree(v) for k, v in structure.items()}
  if isinstance(structure, list):
    return tuple(abstract_tree(v) for v in structure)
  match = _LEAF.match(structure)
  if match is None:
    raise ValueError(f"bad leaf {structure!r} in a saved tree structure")
  shape = tuple(int(d) for d in match.group(2).split(",") if d)
  return jax.ShapeDtypeStruct(shape, jnp.dtype(match.group(1)))


def _key_to_json(key: jax.Array) -> dict[str, Any]:
  return {"impl": str(jax.random.key_impl(key)), "data": np.asarray(jax.random.key_data(key)).tolist()}


def _key_from_json(saved: dict[str, Any]) -> jax.Array:
  return jax.random.wrap_key_data(np.asarray(saved["data"], np.uint32), impl=saved["impl"])


def _is_key(x) -> bool:
  return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _crc32(array: np.ndarray, crc: int) -> int:
  """CRC-32 of an array's bytes in C order, continued from `crc`; a strided view (the replay's written part)
  is read row by row, not copied."""
  if array.ndim > 1 and not array.flags.c_contiguous:
    for row in array:
      crc = _crc32(row, crc)
    return crc
  return zlib.crc32(np.ascontiguousarray(array).view(np.uint8).reshape(-1), crc)


def checksum(tree) -> int:
  """CRC-32 over a tree's leaves (bytes, in flatten order)."""
  crc = 0
  for leaf in jax.tree.leaves(jax.device_get(tree)):
    crc = _crc32(np.asarray(leaf), crc)
  return crc


def _path_str(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def _count(structure) -> int:
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(abstract_tree(structure)))


def summarize(meta: dict[str, Any]) -> dict[str, Any]:
  """Structure summary of a checkpoint from its meta (no arrays read)."""
  params = meta["structure"]["params"]
  return {"frames": meta["loop"].get("frames"), "updates": meta["loop"].get("updates"),
          "branches": params_tree.num_injections(params), "params_trainable": _count(params_tree.trainable(params)),
          "params_frozen": _count(params_tree.frozen(params)), "replay": meta["replay"] is not None}


# -- what a restore returns --------------------------------------------------------


@dataclasses.dataclass
class Restored:
  """One checkpoint read back. `replay` is in `ReplayBuffer.state_dict()` form."""

  step: int
  path: str
  meta: dict[str, Any]
  trees: dict[str, Any]  # TrainState fields other than opt_state and keys: params, target_params, …
  opt_state: Any | None
  replay: dict[str, Any] | None

  @property
  def loop(self) -> dict[str, Any]:
    return self.meta["loop"]

  @property
  def params(self) -> networks.Params:
    return self.trees["params"]

  def keys(self) -> dict[str, jax.Array]:
    """The loop's RNG keys by name (e.g. "act", "eval", "surgery")."""
    return {name: _key_from_json(k) for name, k in self.meta["keys"].items()}

  def train_state(self, fresh: dqn.TrainState, optimizer: optax.GradientTransformation,
                  load: str = "all") -> dqn.TrainState:
    """`fresh` with what `load` (one of LOADS) takes from the checkpoint.

    "params": the params-like trees (params, θ₀ …; the target params a copy of
    the params) and a fresh optimizer state; "params+optimizer"(+"replay"): the
    saved target params and optimizer state too; "all": also the counters
    (num_updates) and the learner's RNG keys.
    """
    trees = {k: v for k, v in self.trees.items() if k not in _COUNTERS or load == "all"}
    if load == "params":
      trees.update(target_params=self.params, opt_state=params_tree.init_opt_state(optimizer, self.params))
    else:
      trees["opt_state"] = self.opt_state
    if load == "all":
      trees.update({name: _key_from_json(k) for name, k in self.meta["state_keys"].items()})
    return fresh.replace(**trees)


# -- the manager ---------------------------------------------------------------------


class Checkpointer:
  """Saves and restores checkpoints in one directory (workdir/checkpoints)."""

  def __init__(self, directory: str, *, max_to_keep: int = 2, async_save: bool = True, read_only: bool = False):
    self.directory = os.path.abspath(directory)
    if read_only and not os.path.isdir(self.directory):
      raise CheckpointError(f"no checkpoint directory {self.directory}")
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None if read_only else max_to_keep, read_only=read_only, create=not read_only,
        save_interval_steps=0 if read_only else 1,
        cleanup_tmp_directories=not read_only, enable_async_checkpointing=async_save,
        todelete_subdir=None if read_only else _TODELETE)
    self._manager = ocp.CheckpointManager(self.directory, options=options)
    self._pending = None  # The step being written in the background.
    self._failed = False
    self._purge_deleted()

  def steps(self) -> list[int]:
    """Step numbers (= frames) of the complete checkpoints, oldest first."""
    return sorted(self._manager.all_steps())

  def step_path(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def _purge_deleted(self) -> None:
    shutil.rmtree(os.path.join(self.directory, _TODELETE), ignore_errors=True)

  def _save_error(self, step: int, error: Exception) -> SaveError:
    """One line: the step that was not saved, why (with the free space if the disk is full), what is left."""
    saved = max((int(n) for n in os.listdir(self.directory) if n.isdigit() and int(n) != step), default=None)
    why = describe_error(error)
    if workdir_lib.is_disk_full(error):
      why = f"no space left on device ({workdir_lib.free_space(self.directory)} on {self.directory})"
    left = (f"the newest saved checkpoint is at {saved:,} frames; the same command resumes from it"
            if saved is not None else "no checkpoint was saved before it")
    logging.debug("the save of %s failed", self.step_path(step), exc_info=error)
    return SaveError(f"checkpoint {self.step_path(step)} was not saved: {why}; {left}", self.directory, step, saved)

  def _wait(self) -> None:
    """Waits for the background write; SaveError (once) if it failed."""
    try:
      self._manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      step, self._pending, self._failed = self._pending, None, True
      raise self._save_error(step, e) from None
    self._pending = None

  def save(self, step: int, *, state: dqn.TrainState, keys: dict[str, jax.Array], loop: dict[str, Any],
           replay=None, config=None) -> None:
    """Starts writing a checkpoint; returns once the arrays are copied (see the module docstring).

    loop: the loop's JSON-able counters and cursors (restored as `Restored.loop`).
    replay: a ReplayBuffer to include, or None.
    """
    self._wait()
    self._purge_deleted()
    fields = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
    state_keys = {k: v for k, v in fields.items() if _is_key(v)}
    # Optional fields left at None (TrainState.masks without expansion) are not saved: the restore keeps the
    # fresh state's None, and a checkpoint without them reads as before.
    trees = {k: v for k, v in fields.items() if k != "opt_state" and k not in state_keys and v is not None}
    replay_state = replay.state_dict() if replay is not None and len(replay) else None
    replay_arrays = None if replay_state is None else {k: replay_state[k] for k in REPLAY_ARRAYS}
    meta = {
        "version": 1,
        "loop": loop,
        "state_keys": {name: _key_to_json(k) for name, k in state_keys.items()},
        "keys": {name: _key_to_json(k) for name, k in keys.items()},
        "structure": {name: tree_to_json(t) for name, t in trees.items()} | {
            "opt_state": str(jax.tree.structure(state.opt_state))},
        "checksums": {"state": checksum(trees), "opt_state": checksum(state.opt_state)} | (
            {} if replay_arrays is None else {"replay": checksum(replay_arrays)}),
        "replay": None if replay_state is None else {
            k: (replay_state[k].tobytes().decode() if k == "rng_state" else int(replay_state[k]))
            for k in replay_state if k not in REPLAY_ARRAYS},
        "config": None if config is None else json.loads(config.to_json_best_effort()),
    }
    items = {"meta": ocp.args.JsonSave(meta), "state": ocp.args.StandardSave(trees),
             "opt_state": ocp.args.StandardSave({"opt_state": state.opt_state})}
    if replay_arrays is not None:
      items["replay"] = ocp.args.StandardSave(replay_arrays)
    self._pending = step
    try:
      self._manager.save(step, args=ocp.args.Composite(**items), force=True)
    except Exception as e:  # pylint: disable=broad-except  (a synchronous save writes here)
      self._pending, self._failed = None, True
      raise self._save_error(step, e) from None

  def wait(self) -> None:
    """Blocks until the last save is on disk; SaveError if it failed."""
    self._wait()
    self._purge_deleted()

  def close(self) -> None:
    """Waits for the last save (SaveError if it failed) and closes; after a failed save, only closes."""
    if self._failed:
      try:
        self._manager.close()  # Orbax raises the failed save's error again.
      except Exception:  # pylint: disable=broad-except
        logging.debug("closing %s after a failed save", self.directory, exc_info=True)
      return
    self._wait()
    self._manager.close()
    self._purge_deleted()

  def read_meta(self, step: int) -> dict[str, Any]:
    return self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta

  def restore_step(self, step: int, *, optimizer: optax.GradientTransformation | None = None,
                   with_opt_state: bool = True, with_replay: bool = True) -> Restored:
    """Reads one step (raises on any unreadable part).

    The optimizer state is restored into `optimizer`'s structure when given;
    with `with_opt_state` and no optimizer it comes back raw (nested dicts).
    """
    meta = self.read_meta(step)
    abstract = {name: abstract_tree(v) for name, v in meta["structure"].items() if name != "opt_state"}
    items = {"state": ocp.args.StandardRestore(abstract)}
    if with_opt_state:
      target = None
      if optimizer is not None:
        target = jax.eval_shape(optimizer.init, params_tree.trainable(abstract["params"]))
        if str(jax.tree.structure(target)) != meta["structure"]["opt_state"]:
          raise CheckpointError(
              f"{self.step_path(step)}: its optimizer state was made by another optimizer (saved "
              f"{meta['structure']['opt_state']}, this run's {jax.tree.structure(target)})")
      items["opt_state"] = ocp.args.StandardRestore(None if target is None else {"opt_state": target})
    if with_replay and meta["replay"] is not None:
      items["replay"] = ocp.args.StandardRestore()
    out = self._manager.restore(step, args=ocp.args.Composite(**items))
    for name in ("state", "opt_state", "replay"):  # checksums.replay: absent in checkpoints saved before it.
      if name in items and name in meta["checksums"]:
        tree = {k: out[name][k] for k in REPLAY_ARRAYS} if name == "replay" else out[name]
        if checksum(tree) != meta["checksums"][name]:
          raise ValueError(f"{self.step_path(step)}/{name}: the arrays read back differ from those saved (checksum)")
    replay = None
    if "replay" in items:
      replay = {**meta["replay"], **{k: out.replay[k] for k in REPLAY_ARRAYS}}
      replay["rng_state"] = np.frombuffer(meta["replay"]["rng_state"].encode(), np.uint8).copy()
    # Via host, so the arrays are uncommitted like fresh ones (committed ones would re-trace the jitted update).
    uncommitted = lambda tree: jax.tree.map(lambda x: jax.device_put(np.asarray(x)), tree)
    return Restored(step=step, path=self.step_path(step), meta=meta, trees=uncommitted(dict(out.state)),
                    opt_state=uncommitted(out.opt_state["opt_state"]) if with_opt_state else None, replay=replay)

  def restore(self, step: int | None = None, **kwargs) -> Restored | None:
    """`restore_step(step)`; with step None the newest readable step, or None if there are none.

    Unreadable steps are skipped with a warning; if every step is unreadable,
    CheckpointError names the directory and the errors.
    """
    if step is not None:
      return self.restore_step(step, **kwargs)
    errors = []
    for candidate in reversed(self.steps()):
      try:
        return self.restore_step(candidate, **kwargs)
      except CheckpointError:
        raise
      except Exception as e:  # pylint: disable=broad-except
        logging.warning("checkpoint %s is unreadable (%s); trying the previous one", self.step_path(candidate),
                        describe_error(e))
        logging.debug("checkpoint %s: the full error", self.step_path(candidate), exc_info=e)
        errors.append(f"{self.step_path(candidate)}: {describe_error(e)}")
    if errors:
      raise CheckpointError(f"no readable checkpoint in {self.directory} ({'; '.join(errors)}); move the "
                            "unreadable steps aside (or use a new --workdir) to start again")
    return None

  def set_aside(self, steps) -> None:
    """Moves (unreadable) steps to checkpoints/unreadable/ so that new saves can reuse their numbers."""
    for step in steps:
      dst = os.path.join(self.directory, "unreadable", str(step))
      os.makedirs(os.path.dirname(dst), exist_ok=True)
      shutil.rmtree(dst, ignore_errors=True)
      os.rename(self.step_path(step), dst)
    self._manager.reload()


# -- reincarnation ---------------------------------------------------------------------


def source_path(config, seed: int | None = None) -> str:
  """config.reincarnate.path with `{seed}` replaced by the seed (config.seed unless given) and `{game}` by
  config.game: seed n of an N-seed run (or of a sweep) reincarnates seed n's agent of its own game, e.g.
  `ROOT/{game}/baseline/seed_{seed}` (a sweep's layout); a path without them is every seed's (game's) source."""
  seed = config.seed if seed is None else seed
  return config.reincarnate.path.replace("{seed}", str(seed)).replace("{game}", str(config.game))


def open_source(path: str) -> tuple[Checkpointer, int | None]:
  """A workdir, its checkpoints/ directory or one checkpoints/<frames> step -> (checkpointer, step or None)."""
  path = os.path.abspath(path)
  if os.path.isdir(os.path.join(path, "checkpoints")):
    return Checkpointer(os.path.join(path, "checkpoints"), read_only=True), None
  name = os.path.basename(path.rstrip("/"))
  if name.isdigit() and os.path.isfile(os.path.join(path, "_CHECKPOINT_METADATA")):
    return Checkpointer(os.path.dirname(path), read_only=True), int(name)
  if os.path.isdir(path) and any(n.isdigit() for n in os.listdir(path)):
    return Checkpointer(path, read_only=True), None
  raise CheckpointError(f"reincarnate.path {path}: not a workdir with checkpoints/, a checkpoints/ "
                        "directory or a checkpoints/<frames> step directory")


def _free_dims(network: networks.QNetwork, layer: str, rel: tuple[str, ...], ndim: int) -> set[int]:
  """Dims of a leaf that growth may change: hidden dense widths (and the next layer's fan-in)."""
  names = network.layer_names
  spec = network.spec(layer)
  free = set()
  if spec.kind == "dense" and not network.is_output(layer):
    free.add(ndim - 1)  # kernel [in, out] / bias / norm: out.
  previous = network.spec(names[names.index(layer) - 1]) if names.index(layer) else None
  if rel[-1] == "kernel" and previous is not None and previous.kind == "dense" and spec.kind == "dense":
    free.add(0)  # fan-in from a (possibly grown) hidden dense layer.
  return free


def check_compatible(params: networks.Params, network: networks.QNetwork, obs_shape: tuple[int, ...],
                     source: str) -> None:
  """Raises CheckpointError listing the tree paths where saved params do not fit `network`.

  Every layer (on the main path and in each injected branch) must have the
  leaves, shapes and dtypes of a fresh `network`'s layer of the same name;
  only the widths of hidden dense layers may differ (growth).
  """
  fresh = jax.eval_shape(lambda: network.init(jax.random.key(0), obs_shape))
  reference = {name: {tuple(_path_str(p).split("/")): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(v)[0]}
               for name, v in params_tree.main_layers(fresh).items()}
  problems, seen = [], {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    parts = tuple(_path_str(path).split("/"))
    at = next((i for i, p in enumerate(parts) if p in reference), None)
    if at is None:
      problems.append(f"{'/'.join(parts)}: no layer of that name in the new network")
      continue
    layer, rel = parts[at], parts[at + 1:]
    seen.setdefault(parts[:at + 1], set()).add(rel)
    ref = reference[layer].get(rel)
    if ref is None:
      problems.append(f"{'/'.join(parts)}: saved {tuple(leaf.shape)}, the new network has no such leaf")
      continue
    free = _free_dims(network, layer, rel, len(ref.shape))
    if (len(leaf.shape) != len(ref.shape) or leaf.dtype != ref.dtype or
        any(a != b for i, (a, b) in enumerate(zip(leaf.shape, ref.shape)) if i not in free)):
      problems.append(f"{'/'.join(parts)}: saved {leaf.dtype}{tuple(leaf.shape)}, "
                      f"the new config's network expects {ref.dtype}{tuple(ref.shape)}")
  for prefix, rels in seen.items():
    for rel in sorted(set(reference[prefix[-1]]) - rels):
      problems.append(f"{'/'.join(prefix + rel)}: missing in the saved params")
  main = set(params_tree.main_layers(params))
  problems += [f"layer {name}: missing in the saved params" for name in network.layer_names if name not in main]
  if problems:
    raise CheckpointError(f"the agent saved in {source} does not fit the new config's network "
                          f"(e.g. another game's action count, or another width):\n  " + "\n  ".join(problems))


def reincarnate(config, agent: dqn.DQNAgent) -> Restored:
  """The agent saved at config.reincarnate.path, with what config.reincarnate.load needs.

  CheckpointError if it cannot start this run: another network (paths and
  shapes named), another optimizer, or a replay of another size.
  """
  path, load = source_path(config), config.reincarnate.load
  if load not in LOADS:
    raise CheckpointError(f"reincarnate.load {load!r}: allowed {LOADS}")
  checkpointer, step = open_source(path)
  try:
    with_replay = load in ("params+optimizer+replay", "all")
    restored = checkpointer.restore(step, optimizer=None if load == "params" else agent.optimizer,
                                    with_opt_state=load != "params", with_replay=with_replay)
  finally:
    checkpointer.close()
  if restored is None:
    raise CheckpointError(f"reincarnate.path {path}: no checkpoints in {checkpointer.directory}")
  check_compatible(restored.params, agent.network, agent.obs_shape, restored.path)
  saved_network = (restored.meta.get("config") or {}).get("network", {})
  if saved_network.get("activation", config.network.activation) != config.network.activation:
    raise CheckpointError(f"the agent saved in {restored.path} uses network.activation="
                          f"{saved_network['activation']!r}, the new config {config.network.activation!r}")
  if with_replay:
    if restored.replay is None:
      raise CheckpointError(f"reincarnate.load={load!r} needs a replay, but {restored.path} was saved without "
                            "one (checkpoint.save_replay=False): load 'params+optimizer' instead")
    saved = (restored.replay["num_envs"], restored.replay["capacity_per_env"])
    new = (config.env.num_envs, -(-config.replay.capacity // config.env.num_envs))
    if saved != new:
      raise CheckpointError(f"the replay saved in {restored.path} has (num_envs, capacity per env) = {saved}, "
                            f"the new config {new}: keep env.num_envs and replay.capacity, or load less")
  if load == "all" and restored.loop["frames"] >= config.total_frames:
    raise CheckpointError(f"reincarnate.load='all' continues at {restored.loop['frames']:,} frames "
                          f"(from {restored.path}), not below total_frames={config.total_frames:,}")
  return restored
