"""One run's learning curve (eval.csv + metrics.jsonl of a workdir) as a PNG.

Evaluation returns (mean over episodes, with the min–max band) and the training
episodes' returns (a rolling mean) against frames, with every intervention
event (injection, reset, …) marked by a vertical line and its name.
"""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

from plasticity_rl import recorder  # pylint: disable=g-bad-import-order


def _eval_points(workdir: str):
  by_frames: dict[int, list[float]] = {}
  if os.path.exists(os.path.join(workdir, "eval.csv")):
    for row in recorder.read_eval(workdir):
      by_frames.setdefault(int(row["frames"]), []).append(float(row["episode_return"]))
  frames = np.array(sorted(by_frames), dtype=np.int64)
  returns = [np.array(by_frames[f]) for f in frames]
  return frames, returns


def _metrics(workdir: str):
  """Training episodes and intervention events, read as every reader reads metrics.jsonl (recorder.read_metrics:
  a torn last line left out, a damaged one an error naming its line)."""
  episodes, events = [], []
  if os.path.exists(os.path.join(workdir, "metrics.jsonl")):
    for row in recorder.read_metrics(workdir):
      if row["kind"] == "episode":
        episodes.append((row["frames"], row["episode_return"]))
      elif row["kind"] == "event":
        events.append((row["frames"], row.get("name", "event")))
  return np.array(episodes, dtype=np.float64).reshape(-1, 2), events


def plot_learning_curve(workdir: str, title: str = "", path: str | None = None) -> str:
  """Writes <workdir>/learning_curve.png (or `path`) and returns its path."""
  frames, returns = _eval_points(workdir)
  episodes, events = _metrics(workdir)
  fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
  if len(episodes):
    window = max(1, min(20, len(episodes) // 5))
    smooth = np.convolve(episodes[:, 1], np.ones(window) / window, mode="valid")
    ax.plot(episodes[window - 1:, 0], smooth, color="0.6", lw=1,
            label=f"training episodes (mean of {window}, ε-greedy)")
  if len(frames):
    mean = np.array([r.mean() for r in returns])
    ax.fill_between(frames, [r.min() for r in returns], [r.max() for r in returns], color="C0", alpha=0.2)
    ax.plot(frames, mean, "o-", color="C0", lw=2, label="evaluation (mean, min–max band)")
  for frame, name in events:
    ax.axvline(frame, color="C3", ls="--", lw=1)
    ax.annotate(name, (frame, 1.0), xycoords=("data", "axes fraction"), rotation=90, va="top", ha="right",
                color="C3", fontsize=8)
  ax.set_xlabel("environment frames")
  ax.set_ylabel("episode return (raw game score)")
  ax.set_title(title or os.path.basename(os.path.abspath(workdir)))
  ax.grid(alpha=0.3)
  if ax.get_legend_handles_labels()[0]:
    ax.legend(loc="upper left", fontsize=8)
  fig.tight_layout()
  path = path or os.path.join(workdir, "learning_curve.png")
  fig.savefig(path)
  plt.close(fig)
  return path
