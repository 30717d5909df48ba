"""Published learning results shipped as package data, to compare our runs with (plasticity_rl/reproduce.py).

- `drq_eps_atari100k`: DrQ(ε) on the 26 Atari-100k games, 100 runs per game, each run's final score (the mean
  return of its 100 evaluation episodes after 100k agent steps). Released by Agarwal et al. 2021 ("Deep RL at
  the Edge of the Statistical Precipice", the rliable data, gs://rl-benchmark-data/atari_100k); copied from
  its mirror eloialonso/iris, results/data/DrQ(eps).json (data/drq_eps_atari100k.SOURCE.md says how).
- `dopamine_dqn_atari` (a learning-curve dataset, `load_curves`): Dopamine's JAX DQN (Nature CNN) on Atari,
  5 runs per game, the mean evaluation return after each of 200 iterations of 1M training frames (iteration i
  follows (i + 1)M frames). From google/dopamine, baselines/atari/data/<game>_CNN.json; Pong and Breakout so far
  (data/dopamine_dqn_atari.SOURCE.md says how, and what the runs are).
"""

import csv
import functools
import importlib.resources

import numpy as np

DATASETS = ("drq_eps_atari100k",)  # Final scores: load().
CURVE_DATASETS = ("dopamine_dqn_atari",)  # Per-iteration learning curves: load_curves().


@functools.cache
def load(name: str) -> dict[str, np.ndarray]:
  """{game: float64 [runs]} of a dataset in DATASETS, runs in file order."""
  if name not in DATASETS:
    hint = f" ({name} holds learning curves: load_curves)" if name in CURVE_DATASETS else ""
    raise ValueError(f"unknown published dataset {name!r}; known: {DATASETS}{hint}")
  runs: dict[str, list[float]] = {}
  with (importlib.resources.files("plasticity_rl") / "data" / f"{name}.csv").open() as f:
    for row in csv.DictReader(f):
      runs.setdefault(row["game"], []).append(float(row["score"]))
  return {game: np.asarray(scores, np.float64) for game, scores in runs.items()}


@functools.cache
def load_curves(name: str) -> dict[str, np.ndarray]:
  """{game: float64 [runs, iterations]} of a dataset in CURVE_DATASETS: row r is run r's curve, column i its score
  at iteration i. Every run of a game covers the same iterations 0..n-1 (checked)."""
  if name not in CURVE_DATASETS:
    hint = f" ({name} holds final scores: load)" if name in DATASETS else ""
    raise ValueError(f"unknown published curve dataset {name!r}; known: {CURVE_DATASETS}{hint}")
  points: dict[str, dict[tuple[int, int], float]] = {}
  with (importlib.resources.files("plasticity_rl") / "data" / f"{name}.csv").open() as f:
    for row in csv.DictReader(f):
      key = (int(row["seed"]), int(row["iteration"]))
      game = points.setdefault(row["game"], {})
      if key in game:
        raise ValueError(f"{name}: {row['game']} seed {key[0]} iteration {key[1]} appears twice")
      game[key] = float(row["score"])
  curves = {}
  for game, by_key in points.items():
    seeds = sorted({s for s, _ in by_key})
    iterations = sorted({i for _, i in by_key})
    if seeds != list(range(len(seeds))) or iterations != list(range(len(iterations))) or \
        len(by_key) != len(seeds) * len(iterations):
      raise ValueError(f"{name}: {game} does not hold every seed 0..n-1 at every iteration 0..m-1")
    curves[game] = np.array([[by_key[s, i] for i in iterations] for s in seeds], np.float64)
  return curves
