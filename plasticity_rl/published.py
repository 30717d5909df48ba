"""Published learning results shipped as package data, to compare our runs with (plasticity_rl/reproduce.py).

- `drq_eps_atari100k`: DrQ(ε) on the 26 Atari-100k games, 100 runs per game, each run's final score (the mean
  return of its 100 evaluation episodes after 100k agent steps). Released by Agarwal et al. 2021 ("Deep RL at
  the Edge of the Statistical Precipice", the rliable data, gs://rl-benchmark-data/atari_100k); copied from
  its mirror eloialonso/iris, results/data/DrQ(eps).json (data/drq_eps_atari100k.SOURCE.md says how).
"""

import csv
import functools
import importlib.resources

import numpy as np

DATASETS = ("drq_eps_atari100k",)


@functools.cache
def load(name: str) -> dict[str, np.ndarray]:
  """{game: float64 [runs]} of a dataset in DATASETS, runs in file order."""
  if name not in DATASETS:
    raise ValueError(f"unknown published dataset {name!r}; known: {DATASETS}")
  runs: dict[str, list[float]] = {}
  with (importlib.resources.files("plasticity_rl") / "data" / f"{name}.csv").open() as f:
    for row in csv.DictReader(f):
      runs.setdefault(row["game"], []).append(float(row["score"]))
  return {game: np.asarray(scores, np.float64) for game, scores in runs.items()}
