"""The Atari game lists and the random/human score table (package data).

Scores: google-deepmind/dqn_zoo, dqn_zoo/atari_data.py (random and human
reference scores of the 57-game benchmark). This module is data only: both the
env factory and the analysis code read it, neither imports the other.
"""

import csv
import functools
import importlib.resources
import re
from typing import NamedTuple


class GameScores(NamedTuple):
  ale_rom: str  # e.g. "pong"
  name: str  # envpool task name without the version suffix, e.g. "Pong"
  random: float
  human: float


@functools.cache
def score_table() -> dict[str, GameScores]:
  """Canonical name ("Pong") -> scores, for the 57 games of the benchmark."""
  path = importlib.resources.files("plasticity_rl") / "data" / "atari57_scores.csv"
  table = {}
  with path.open() as f:
    for row in csv.DictReader(f):
      name = row["envpool_id"].removesuffix("-v5")
      table[name] = GameScores(row["ale_rom"], name, float(row["random"]), float(row["human"]))
  return table


ATARI57 = tuple(score_table())
# Aitchison, Sweetser & Hutter 2023, "Atari-5: Distilling the Arcade Learning
# Environment down to Five Games".
ATARI5 = ("BattleZone", "DoubleDunk", "NameThisGame", "Phoenix", "Qbert")
# The 26 games of the Atari 100k benchmark (Kaiser et al. 2020).
ATARI26 = (
    "Alien", "Amidar", "Assault", "Asterix", "BankHeist", "BattleZone", "Boxing",
    "Breakout", "ChopperCommand", "CrazyClimber", "DemonAttack", "Freeway",
    "Frostbite", "Gopher", "Hero", "Jamesbond", "Kangaroo", "Krull", "KungFuMaster",
    "MsPacman", "Pong", "PrivateEye", "Qbert", "RoadRunner", "Seaquest", "UpNDown",
)
GAME_SETS = {"atari57": ATARI57, "atari26": ATARI26, "atari5": ATARI5}


def _key(name: str) -> str:
  return re.sub(r"[^a-z0-9]", "", name.lower())


@functools.cache
def _aliases() -> dict[str, str]:
  aliases = {}
  for game in score_table().values():
    aliases[_key(game.name)] = game.name
    aliases[_key(game.ale_rom)] = game.name
  return aliases


def canonical_game(name: str) -> str | None:
  """"Pong", "Pong-v5", "pong" -> "Pong"; None when not one of the 57 games."""
  return _aliases().get(_key(re.sub(r"-v\d+$", "", name.strip())))


def human_normalized(game: str, score: float) -> float:
  """(score - random) / (human - random) for one of the 57 games."""
  entry = score_table()[canonical_game(game) or game]
  return (score - entry.random) / (entry.human - entry.random)
