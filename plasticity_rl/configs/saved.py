"""The config a run was made with, rebuilt from its config.json; `:arg` is the workdir or the file.

  --config=configs/saved.py:runs/pong               runs/pong/config.json
  --config=configs/saved.py:runs/pong/config.json   the same

Starts from `config.base_config()` (the schema, so every field keeps its type:
tuples stay tuples, placeholders stay typed) and sets every saved value. A saved
field the schema lacks is an error naming it. plasticity_rl/diagnose.py uses
this to branch a saved agent with the config that trained it.
"""

import json
import os

import ml_collections

from plasticity_rl import config as config_lib


def _set(config: ml_collections.ConfigDict, saved: dict, prefix: str = "") -> ml_collections.ConfigDict:
  """Sets the saved values into `config` (a fresh schema), recursively; returns it."""
  for key, value in saved.items():
    name = prefix + key
    if key not in config:
      raise ValueError(f"saved field {name!r} is not in the config schema (plasticity_rl/config.py)")
    if isinstance(config[key], ml_collections.ConfigDict):
      if not isinstance(value, dict):
        raise ValueError(f"saved field {name!r} is {value!r}, the schema has a section there")
      _set(config[key], value, name + ".")
      continue
    try:
      config[key] = value
    except TypeError as e:
      raise ValueError(f"saved field {name!r}: {e}") from None
  return config


def from_json(saved: dict) -> ml_collections.ConfigDict:
  """A config.json's content -> the ConfigDict it was written from."""
  return _set(config_lib.base_config(), saved)


def get_config(arg: str | None = None):
  if not arg:
    raise ValueError("configs/saved.py needs a workdir or a config.json: --config=configs/saved.py:WORKDIR")
  path = os.path.join(arg, "config.json") if os.path.isdir(arg) else arg
  if not os.path.isfile(path):
    raise ValueError(f"configs/saved.py: no config file {path}")
  with open(path) as f:
    return from_json(json.load(f))
