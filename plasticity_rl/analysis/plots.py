"""PNG plots of the aggregates: intervals, sample efficiency, performance profile.

Plain matplotlib (Agg), rliable's figure types: rliable.plot_utils needs seaborn,
which the project does not depend on. One color per variant, in sorted order,
the same in every plot.
"""

from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
import pandas as pd

_METRICS = ("IQM", "Median", "Mean", "Optimality gap")
_DPI = 150


def colors(variants) -> dict[str, str]:
  return {v: f"C{i % 10}" for i, v in enumerate(sorted(variants))}


def _save(fig, path: str) -> str:
  fig.savefig(path, dpi=_DPI, bbox_inches="tight")
  plt.close(fig)
  return path


def interval_plot(aggregate: pd.DataFrame, path: str) -> str:
  """One panel per metric: a bar per variant spanning its 95 % CI, a tick at the estimate."""
  variants = list(aggregate["variant"])
  color = colors(variants)
  fig, axes = plt.subplots(1, len(_METRICS), figsize=(3.3 * len(_METRICS), 1.4 + 0.45 * len(variants)),
                           sharey=True)
  for ax, name in zip(axes, _METRICS):
    for i, (variant, point, lo, hi) in enumerate(
        aggregate[["variant", name, f"{name} lo", f"{name} hi"]].itertuples(index=False)):
      ax.barh(i, hi - lo, left=lo, height=0.6, color=color[variant], alpha=0.75)
      ax.vlines(point, i - 0.3, i + 0.3, color="k", lw=2)
    ax.set_title(name + (" (lower is better)" if name == "Optimality gap" else ""), fontsize=11)
    ax.set_xlabel("human-normalized score")
    ax.xaxis.set_major_locator(plt.MaxNLocator(4))
    ax.grid(axis="x", alpha=0.3)
    ax.tick_params(axis="y", length=0)
    for side in ("top", "right", "left"):
      ax.spines[side].set_visible(False)
  axes[0].set_yticks(range(len(variants)), variants, fontsize=11)
  axes[0].set_ylim(-0.6, len(variants) - 0.4)
  axes[0].invert_yaxis()
  fig.suptitle("Aggregate final scores: estimate (black) and 95 % stratified-bootstrap CI (bar)", fontsize=12)
  fig.tight_layout()
  return _save(fig, path)


def _frames_axis(frames_max: float) -> tuple[float, str]:
  if frames_max >= 1e6:
    return 1e6, "environment frames (millions)"
  return 1.0, "environment frames"


def _spread(values: np.ndarray, gap: float) -> np.ndarray:
  """Moves sorted label positions apart by at least `gap`, keeping their order."""
  order = np.argsort(values)
  out = values.astype(float).copy()
  for previous, current in zip(order[:-1], order[1:]):
    out[current] = max(out[current], out[previous] + gap)
  return out


def sample_efficiency_plot(curves: Mapping, path: str) -> str:
  """IQM human-normalized score vs frames, 95 % CI bands, each line labelled at its end."""
  color = colors(curves)
  scale, xlabel = _frames_axis(max(float(c.frames.max()) for c in curves.values()))
  fig, ax = plt.subplots(figsize=(7.5, 4.5))
  for variant, c in curves.items():
    x = c.frames / scale
    ax.fill_between(x, c.lo, c.hi, color=color[variant], alpha=0.2, lw=0)
    ax.plot(x, c.iqm, "o-" if len(x) <= 30 else "-", ms=3, lw=2, color=color[variant], label=variant)
  low, high = ax.get_ylim()
  ends = _spread(np.array([c.iqm[-1] for c in curves.values()]), 0.05 * (high - low))
  for (variant, c), y in zip(curves.items(), ends):
    ax.annotate(variant, (c.frames[-1] / scale, y), xytext=(6, 0), textcoords="offset points",
                va="center", color=color[variant], fontsize=10, fontweight="bold", annotation_clip=False)
  ax.set_xlabel(xlabel)
  ax.set_ylabel("IQM human-normalized score")
  ax.set_title("Sample efficiency: IQM over runs × games, 95 % CI bands")
  ax.grid(alpha=0.3)
  ax.margins(x=0.02)
  for side in ("top", "right"):
    ax.spines[side].set_visible(False)
  fig.tight_layout()
  return _save(fig, path)


def profile_plot(taus: np.ndarray, profiles: Mapping[str, np.ndarray], cis: Mapping[str, np.ndarray],
                 path: str) -> str:
  """Fraction of runs with human-normalized score > tau, 95 % CI bands."""
  color = colors(profiles)
  fig, ax = plt.subplots(figsize=(7.5, 4.5))
  for variant, profile in profiles.items():
    ax.fill_between(taus, cis[variant][0], cis[variant][1], color=color[variant], alpha=0.2, lw=0)
    ax.plot(taus, profile, lw=2, color=color[variant], label=variant)
  if taus[-1] >= 1.0:
    ax.axvline(1.0, color="0.4", ls="--", lw=1)
    ax.annotate("human", (1.0, 1.0), xytext=(3, -3), textcoords="offset points", va="top", color="0.4",
                xycoords=("data", "axes fraction"))
  ax.set_xlabel(r"human-normalized score $\tau$")
  ax.set_ylabel(r"fraction of runs with score $> \tau$")
  ax.set_ylim(0, 1.02)
  ax.set_title("Performance profile (score distribution over runs × games), 95 % CI bands")
  ax.legend(title="variant", loc="upper right", frameon=False)
  ax.grid(alpha=0.3)
  for side in ("top", "right"):
    ax.spines[side].set_visible(False)
  fig.tight_layout()
  return _save(fig, path)
