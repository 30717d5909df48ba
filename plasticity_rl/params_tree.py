"""The params tree's layout, and the optimizer state by path: the one module that indexes either by hand.

A network's params (networks.QNetwork) are

    {"trainable": {part: {layer: layer params}},           # part: the layer's LayerSpec.part ("encoder", "head")
     "frozen":    {part: {layer: layer params}, …,         # frozen main-path layers (injection.freeze_encoder)
                   "plus": (branch, …), "minus": (branch, …)}}   # injected branches, oldest first

A *branch* is {layer: layer params} over the injected suffix of the layers. Injection i appends
plus_i (the branch it replaced) and minus_i (a frozen copy of the fresh branch that took the
trainable slot, so minus[-1] is the latest injection's init). The *main path* is every layer
outside the branches, trainable or frozen. Only the trainable part is differentiated and has
optimizer state. A *trainable tree* is anything shaped like the trainable part ({part: {layer: …}}:
gradients, weight masks, θ₀); the `*_layers` helpers take one.

Two injection ablations (surgery.inject) change where the branches sit, as keys beside the parts:
`all_trainable` keeps "plus" and "minus" in the trainable part instead (every head receives gradients;
the frozen group's are then empty, and a tree never has both), and `stop_frozen_grad` adds the key
"stop_gradient" (an empty tuple: a flag in the tree's structure, so jit and checkpoints keep it) to the
frozen group: the network feeds the frozen branches features the gradient does not flow back through.
The `*_layers` helpers and `items` see the parts only, and keep these keys as they are.

Other modules read and edit the layout only through these functions (so another layout, e.g. an
encoder-only injection rule, changes this file). Every function is pure: it returns new containers
and never mutates its input; all are plain Python on dicts, so they run inside jit.
"""

from typing import Any, Callable, Iterator, Mapping, Sequence

import jax
import jax.numpy as jnp
import optax

Params = Any  # A nested dict of arrays.

_TRAINABLE, _FROZEN, _PLUS, _MINUS, _STOP_GRADIENT = "trainable", "frozen", "plus", "minus", "stop_gradient"
_BRANCHES = (_PLUS, _MINUS)
_NOT_PARTS = (*_BRANCHES, _STOP_GRADIENT)  # Keys of the trainable / frozen groups that hold no main-path part.


# -- the whole tree -------------------------------------------------------------------------------------------


def new(trainable: Mapping[str, Mapping[str, Params]]) -> Params:
  """The params of a fresh network: `trainable` ({part: {layer: params}}), nothing frozen or injected."""
  return {_TRAINABLE: trainable, _FROZEN: {_PLUS: (), _MINUS: ()}}


def trainable(params: Params) -> Params:
  """The trainable part (a trainable tree): what the loss differentiates and the optimizer state mirrors."""
  return params[_TRAINABLE]


def frozen(params: Params) -> Params:
  """Everything not trained: frozen main-path layers and the injected branches."""
  return params[_FROZEN]


def with_trainable(params: Params, new_trainable: Params) -> Params:
  """`params` with its trainable part replaced (e.g. by the loss's argument or the stepped params)."""
  return {**params, _TRAINABLE: new_trainable}


def main_layers(params: Params) -> dict[str, Params]:
  """{layer name: params} of the main path, whether trainable or frozen."""
  layers = {}
  for group in (params[_FROZEN], params[_TRAINABLE]):
    for part, part_layers in group.items():
      if part not in _NOT_PARTS:
        layers.update(part_layers)
  return layers


def trainable_parts(params: Params) -> dict[str, str]:
  """{layer name: part} of the trainable main-path layers."""
  return {name: part for part, name, _ in items(params[_TRAINABLE])}


def is_plain(params: Params) -> bool:
  """True when every main-path layer is trainable and nothing is injected."""
  group = params[_FROZEN]
  return not (plus_branches(params) or any(part not in _NOT_PARTS for part in group))


def replace_trainable(params: Params, layers: Mapping[str, Params]) -> Params:
  """`params` with the trainable main-path layers `layers` ({name: params}) replaced; KeyError for others."""
  return with_trainable(params, replace_layers(params[_TRAINABLE], layers))


def freeze_all_but(params: Params, keep: Sequence[str]) -> Params:
  """Moves every trainable main-path layer not in `keep` to the frozen part (the same part name)."""
  new_trainable: dict[str, Any] = {k: v for k, v in params[_TRAINABLE].items() if k in _NOT_PARTS}
  new_frozen = {k: (dict(v) if k not in _NOT_PARTS else v) for k, v in params[_FROZEN].items()}
  for part, name, value in items(params[_TRAINABLE]):
    group = new_trainable if name in keep else new_frozen
    group.setdefault(part, {})[name] = value
  return {_TRAINABLE: new_trainable, _FROZEN: new_frozen}


# -- trainable trees ({part: {layer: …}}) ---------------------------------------------------------------------


def items(tree: Params) -> Iterator[tuple[str, str, Params]]:
  """(part, layer name, layer) of a trainable tree's main-path parts, in its order."""
  for part, part_layers in tree.items():
    if part in _NOT_PARTS:
      continue
    for name, layer in part_layers.items():
      yield part, name, layer


def layers(tree: Params) -> dict[str, Params]:
  """{layer name: layer} of a trainable tree (the parts dropped)."""
  return {name: layer for _, name, layer in items(tree)}


def map_layers(fn: Callable[[str, Params], Params], tree: Params) -> Params:
  """A trainable tree of fn(layer name, layer), in the same parts (branch keys kept as they are)."""
  return {part: part_layers if part in _NOT_PARTS else {name: fn(name, layer) for name, layer in part_layers.items()}
          for part, part_layers in tree.items()}


def replace_layers(tree: Params, new_layers: Mapping[str, Params]) -> Params:
  """A trainable tree with the layers `new_layers` ({name: …}) replaced in their parts; KeyError for a name
  the tree does not have."""
  parts = {name: part for part, name, _ in items(tree)}
  missing = [name for name in new_layers if name not in parts]
  if missing:
    raise KeyError(f"layers {missing} are not in the trainable tree (layers: {list(parts)})")
  out = {part: part_layers if part in _NOT_PARTS else dict(part_layers) for part, part_layers in tree.items()}
  for name, value in new_layers.items():
    out[parts[name]][name] = value
  return out


# -- injected branches ----------------------------------------------------------------------------------------


def _branch_group(params: Params) -> Params:
  """The group that holds the injected branches: the frozen one, or the trainable one (`all_trainable`)."""
  return params[_TRAINABLE] if _PLUS in params[_TRAINABLE] else params[_FROZEN]


def plus_branches(params: Params) -> tuple[Params, ...]:
  """The branches the injections replaced, oldest first (plus_0, plus_1, …)."""
  return _branch_group(params).get(_PLUS, ())


def minus_branches(params: Params) -> tuple[Params, ...]:
  """Copies of the fresh branches the injections trained (frozen unless all trainable), oldest first (minus_0, …)."""
  return _branch_group(params).get(_MINUS, ())


def num_injections(params: Params) -> int:
  """Injections so far (also on a saved JSON structure, checkpoint.tree_to_json's)."""
  return len(plus_branches(params))


def injected_layers(params: Params) -> tuple[str, ...]:
  """The layers every injection of this tree replaced (a suffix of the network); () before the first."""
  plus = plus_branches(params)
  return tuple(plus[0]) if plus else ()


def branches_trainable(params: Params) -> bool:
  """True when the injected branches sit in the trainable part (injection.all_trainable)."""
  return _PLUS in params[_TRAINABLE]


def frozen_grad_stopped(params: Params) -> bool:
  """True when no gradient flows from the frozen branches into the layers before them (injection.stop_frozen_grad)."""
  return _STOP_GRADIENT in params[_FROZEN]


def branches(params: Params) -> list[tuple[str, Params]]:
  """[(group name, branch layers)] of the injected branches (frozen, or trainable): plus_0, minus_0, plus_1, …"""
  out = []
  for i, (plus, minus) in enumerate(zip(plus_branches(params), minus_branches(params))):
    out += [(f"plus_{i}", plus), (f"minus_{i}", minus)]
  return out


def add_injection(params: Params, replaced: Params, fresh: Params, *, trainable: bool = False,
                  stop_gradient: bool = False) -> Params:
  """`params` with one more pair of branches: plus = `replaced` (the old branch), minus = `fresh`.

  trainable: the pair goes to the trainable part (every earlier pair must be there too); stop_gradient: the frozen
  branches get features without gradient (every later injection keeps the flag). ValueError when an earlier
  injection of this tree was made the other way."""
  if plus_branches(params) and branches_trainable(params) != trainable:
    earlier = "frozen" if trainable else "trainable"
    raise ValueError(f"the earlier injections' branches are {earlier}: all injections of a run must share "
                     "injection.all_trainable")
  if plus_branches(params) and frozen_grad_stopped(params) != stop_gradient:
    raise ValueError("all injections of a run must share injection.stop_frozen_grad")
  if trainable and stop_gradient:
    raise ValueError("trainable branches have no frozen branch to stop the gradient of")
  key = _TRAINABLE if trainable else _FROZEN
  group = params[key]
  out = {**params, key: {**group, _PLUS: (*group.get(_PLUS, ()), replaced), _MINUS: (*group.get(_MINUS, ()), fresh)}}
  if stop_gradient:
    out[_FROZEN] = {**out[_FROZEN], _STOP_GRADIENT: ()}
  return out


# -- θ₀ and counts --------------------------------------------------------------------------------------------


def init_layers(params: Params, init_params: Params | None) -> dict[str, Params | None]:
  """θ₀ of every main-path layer by name: its own initialization.

  The layers of an injected suffix were re-initialized at the latest injection: their θ₀ is that
  fresh init, kept frozen as minus[-1]. Every other layer's θ₀ is the same layer of `init_params`
  (TrainState.init_params); None where that has no such layer (or `init_params` is None).
  """
  minus = minus_branches(params)
  latest = minus[-1] if minus else {}
  init = main_layers(init_params) if init_params is not None else {}
  return {name: latest[name] if name in latest else init.get(name) for name in main_layers(params)}


def count_params(tree: Params) -> int:
  """Elements over every leaf of a tree (any tree: the params, a part, a branch)."""
  return sum(int(x.size) for x in jax.tree.leaves(tree))


def count_trainable(params: Params) -> int:
  """The trainable part, with its branches when they are trainable (injection.all_trainable)."""
  return count_params(params[_TRAINABLE])


def count_frozen(params: Params) -> int:
  """Frozen main-path layers and every injected branch."""
  return count_params(params[_FROZEN])


# -- optimizer state, by path ---------------------------------------------------------------------------------


def init_opt_state(optimizer: optax.GradientTransformation, params: Params) -> optax.OptState:
  """A fresh optimizer state for the trainable part of `params`."""
  return optimizer.init(params[_TRAINABLE])


def _path_names(path) -> set[str]:
  return {str(getattr(k, "key", getattr(k, "name", k))) for k in path}


def transfer_opt_state(optimizer: optax.GradientTransformation, old_state: optax.OptState, new_trainable: Params,
                       reset: Callable[[set[str]], bool] = lambda names: False) -> optax.OptState:
  """Optimizer state for `new_trainable`, reusing `old_state` leaf by leaf.

  A leaf of the new state takes the old leaf at the same path (e.g. the RMS
  statistics of head/dense_0/kernel) when it exists with the same shape and
  `reset(names on its path)` is False; otherwise it is the optimizer's fresh
  init. Counters (no params on their path) are always kept. Edits go through
  the state's structure, never by position.
  """
  old = {path: leaf for path, leaf in jax.tree_util.tree_flatten_with_path(old_state)[0]}

  def pick(path, fresh):
    previous = old.get(path)
    if previous is None or previous.shape != fresh.shape or reset(_path_names(path)):
      return fresh
    return previous

  return jax.tree_util.tree_map_with_path(pick, optimizer.init(new_trainable))


def zero_opt_state(optimizer: optax.GradientTransformation, opt_state: optax.OptState,
                   masks: Params) -> optax.OptState:
  """Every params-shaped statistic (Adam's μ and ν, RMSProp's ν and μ, …) zeroed where `masks` (a bool tree of
  the trainable params' structure and shapes) is True; counters and the rest kept. By structure, never position."""
  return optax.tree_utils.tree_map_params(optimizer, lambda v, m: jnp.where(m, jnp.zeros_like(v), v), opt_state,
                                          masks, transform_non_params=lambda v: v)
