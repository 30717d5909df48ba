"""Figures (PNG and PDF): aggregate intervals, sample efficiency, performance profile, the per-game
learning-curve grid, the per-game paired benefit and score against compute.

Plain matplotlib (Agg), rliable's figure types: rliable.plot_utils needs seaborn,
which the project does not depend on. One color per variant, in sorted order,
the same in every plot. Every figure states its games and runs per variant and
marks a CI from fewer than 3 runs (stats.FEW_RUNS_NOTE). Each is saved as PATH
(.png) and beside it as .pdf (`figure_paths`).
"""

import math
import os
from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
import pandas as pd

from plasticity_rl.analysis import stats  # pylint: disable=g-bad-import-order

_METRICS = ("IQM", "Median", "Mean", "Optimality gap")
_DPI = 150


def colors(variants) -> dict[str, str]:
  return {v: f"C{i % 10}" for i, v in enumerate(sorted(variants))}


Sizes = Mapping[str, tuple[int, int]]  # variant -> (games, runs per game).


def figure_paths(path: str) -> list[str]:
  """The files a figure saved at `path` (.png) is written to: the PNG and the PDF beside it."""
  return [path, os.path.splitext(path)[0] + ".pdf"]


def _save(fig, path: str) -> str:
  for target in figure_paths(path):
    fig.savefig(target, dpi=_DPI, bbox_inches="tight")
  plt.close(fig)
  return path


def _label(variant: str, sizes: Sizes | None) -> str:
  return f"{variant} ({stats.size_label(*sizes[variant])})" if sizes and variant in sizes else variant


def _few_footnote(fig, flagged: bool) -> None:
  if flagged:
    fig.text(0.01, -0.01, stats.FEW_RUNS_NOTE, ha="left", va="top", fontsize=8, color="0.3")


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
  labels = [f"{v}\n{stats.size_label(g, r)}" for v, g, r in aggregate[["variant", "games", "runs"]].itertuples(index=False)]
  axes[0].set_yticks(range(len(variants)), labels, fontsize=10)
  axes[0].set_ylim(-0.6, len(variants) - 0.4)
  axes[0].invert_yaxis()
  fig.suptitle("Aggregate final scores: estimate (black) and 95 % stratified-bootstrap CI (bar)", fontsize=12)
  fig.tight_layout()
  _few_footnote(fig, any(stats.few(r) for r in aggregate["runs"]))
  return _save(fig, path)


def _frames_axis(frames_max: float) -> tuple[float, str]:
  del frames_max  # Always millions, the papers' unit, whatever the run's length.
  return 1e6, "environment frames (millions)"


def _spread(values: np.ndarray, gap: float) -> np.ndarray:
  """Moves sorted label positions apart by at least `gap`, keeping their order."""
  order = np.argsort(values)
  out = values.astype(float).copy()
  for previous, current in zip(order[:-1], order[1:]):
    out[current] = max(out[current], out[previous] + gap)
  return out


def sample_efficiency_plot(curves: Mapping, path: str, sizes: Sizes | None = None) -> str:
  """IQM human-normalized score vs frames, 95 % CI bands, each line labelled at its end."""
  color = colors(curves)
  scale, xlabel = _frames_axis(max(float(c.frames.max()) for c in curves.values()))
  fig, ax = plt.subplots(figsize=(7.5, 4.5))
  for variant, c in curves.items():
    x = c.frames / scale
    ax.fill_between(x, c.lo, c.hi, color=color[variant], alpha=0.2, lw=0)
    ax.plot(x, c.iqm, "o-" if len(x) <= 30 else "-", ms=3, lw=2, color=color[variant], label=_label(variant, sizes))
  low, high = ax.get_ylim()
  ends = _spread(np.array([c.iqm[-1] for c in curves.values()]), 0.05 * (high - low))
  for (variant, c), y in zip(curves.items(), ends):
    ax.annotate(_label(variant, sizes), (c.frames[-1] / scale, y), xytext=(6, 0), textcoords="offset points",
                va="center", color=color[variant], fontsize=10, fontweight="bold", annotation_clip=False)
  ax.set_xlabel(xlabel)
  ax.set_ylabel("IQM human-normalized score")
  ax.set_title("Sample efficiency: IQM over runs × games, 95 % CI bands")
  ax.grid(alpha=0.3)
  ax.margins(x=0.02)
  for side in ("top", "right"):
    ax.spines[side].set_visible(False)
  fig.tight_layout()
  _few_footnote(fig, bool(sizes) and any(stats.few(r) for _, r in sizes.values()))
  return _save(fig, path)


def profile_plot(taus: np.ndarray, profiles: Mapping[str, np.ndarray], cis: Mapping[str, np.ndarray],
                 path: str, sizes: Sizes | None = None) -> str:
  """Fraction of runs with human-normalized score > tau, 95 % CI bands."""
  color = colors(profiles)
  fig, ax = plt.subplots(figsize=(7.5, 4.5))
  for variant, profile in profiles.items():
    ax.fill_between(taus, cis[variant][0], cis[variant][1], color=color[variant], alpha=0.2, lw=0)
    ax.plot(taus, profile, lw=2, color=color[variant], label=_label(variant, sizes))
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
  _few_footnote(fig, bool(sizes) and any(stats.few(r) for _, r in sizes.values()))
  return _save(fig, path)


def paired_plot(rows: pd.DataFrame, path: str, poi: str = "") -> str:
  """One pair's per-game benefit (paired.per_game rows, sorted): a horizontal bar per game at its relative
  improvement, whiskers at the 95 % CI; green / red when the CI excludes 0 above / below, grey otherwise."""
  x, y = rows["x"].iloc[0], rows["y"].iloc[0]
  fig, ax = plt.subplots(figsize=(7.5, 1.6 + 0.32 * len(rows)))
  for i, r in enumerate(rows.itertuples(index=False)):
    value = 0.0 if math.isnan(r.relative) else r.relative
    has_ci = not (math.isnan(r.relative_lo) or math.isnan(r.relative_hi))
    color = "0.6"
    if has_ci and r.relative_lo > 0:
      color = "C2"
    elif has_ci and r.relative_hi < 0:
      color = "C3"
    ax.barh(i, value, height=0.7, color=color, alpha=0.85, hatch="//" if r.few_runs else None, edgecolor="white")
    if has_ci:
      ax.errorbar(value, i, xerr=[[max(value - r.relative_lo, 0)], [max(r.relative_hi - value, 0)]], fmt="none",
                  ecolor="k", elinewidth=1, capsize=3)
  labels = [f"{r.game} (n={r.seeds}{stats.FEW_RUNS_MARK if r.few_runs else ''})" for r in rows.itertuples()]
  ax.set_yticks(range(len(rows)), labels, fontsize=9)
  ax.set_ylim(-0.6, len(rows) - 0.4)
  ax.invert_yaxis()
  ax.axvline(0, color="k", lw=1)
  ax.set_xlabel(f"relative improvement (%) = ({x} − {y}) / |{y} − random|")
  seeds = sorted(set(rows["seeds"]))
  seed_text = str(seeds[0]) if len(seeds) == 1 else f"{seeds[0]}–{seeds[-1]}"
  ax.set_title(f"Per-game benefit of {x} over {y}: {len(rows)} games, {seed_text} paired seeds per game\n"
               "bar: estimate; whiskers: 95 % paired-bootstrap CI over seeds" + (f"\n{poi}" if poi else ""),
               fontsize=10)
  ax.grid(axis="x", alpha=0.3)
  for side in ("top", "right"):
    ax.spines[side].set_visible(False)
  fig.tight_layout()
  _few_footnote(fig, bool(rows["few_runs"].any()))
  return _save(fig, path)


_MAX_EVENT_LABELS = 8  # Per panel; more events are drawn as lines without names.


def compute_plot(table: pd.DataFrame, path: str) -> str:
  """IQM [95 % CI] against mean training FLOPs [min, max over runs], a labelled point per variant (analysis/
  compute.py's table); variants without accounting are listed under the axis instead."""
  shown = table[np.isfinite(table["train_flops"].to_numpy(dtype=float))]
  color = colors(table["variant"])
  fig, ax = plt.subplots(figsize=(7.0, 4.5))
  top = float(shown["train_flops_max"].max()) if len(shown) else 1.0
  unit, scale = next(((u, f) for u, f in (("EFLOP", 1e18), ("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9))
                      if top >= f), ("FLOP", 1.0))
  for r in shown.to_dict("records"):
    x, y = r["train_flops"] / scale, r["IQM"]
    ax.errorbar(x, y, xerr=[[x - r["train_flops_min"] / scale], [r["train_flops_max"] / scale - x]],
                yerr=[[y - r["IQM lo"]], [r["IQM hi"] - y]], fmt="o", ms=7, capsize=4, lw=1.5,
                color=color[r["variant"]])
    ax.annotate(f"{r['variant']} ({stats.size_label(r['games'], r['runs'])})", (x, y), xytext=(8, 6),
                textcoords="offset points", color=color[r["variant"]], fontsize=10, fontweight="bold")
  missing = [v for v in table["variant"] if v not in set(shown["variant"])]
  ax.set_xlabel(f"training FLOPs per run ({unit}; mean, bar: min–max over runs)" +
                (f"\nno accounting: {', '.join(missing)}" if missing else ""))
  ax.set_ylabel("IQM human-normalized score")
  ax.set_title("Score against compute: IQM with 95 % CI")
  ax.grid(alpha=0.3)
  ax.margins(x=0.15, y=0.15)
  for side in ("top", "right"):
    ax.spines[side].set_visible(False)
  fig.tight_layout()
  _few_footnote(fig, bool(table["few_runs"].any()))
  return _save(fig, path)


def learning_curve_grid(table: pd.DataFrame, events: pd.DataFrame, path: str, columns: int = 4) -> str:
  """One panel per game: each variant's mean evaluation return over seeds (curves.per_game_curves) with its
  95 % CI band, intervention events as dashed lines named at the top of the panel, frames in millions; the
  legend sits above the panels, outside them, so it covers no label."""
  games = sorted(table["game"].unique())
  color = colors(table["variant"].unique())
  columns = max(1, min(columns, len(games)))
  n_rows = math.ceil(len(games) / columns)
  fig, axes = plt.subplots(n_rows, columns, figsize=(4.2 * columns, 3.0 * n_rows), squeeze=False)
  for ax, game in zip(axes.flat, games):
    seeds = {}
    for variant, rows in table[table["game"] == game].groupby("variant", sort=True):
      frames = rows["frames"].to_numpy() / 1e6
      ax.fill_between(frames, rows["lo"], rows["hi"], color=color[variant], alpha=0.2, lw=0)
      ax.plot(frames, rows["mean"], "o-" if len(frames) <= 30 else "-", ms=3, lw=1.8, color=color[variant],
              label=variant)
      seeds[variant] = int(rows["seeds"].max())
    game_events = events[events["game"] == game].drop_duplicates(["variant", "frames", "name"])
    marks = game_events.groupby(["frames", "name"], sort=True)["variant"].agg(sorted)
    for i, ((frames, name), variants) in enumerate(marks.items()):
      mark_color = color[variants[0]] if len(variants) == 1 else "0.3"
      ax.axvline(frames / 1e6, color=mark_color, ls="--", lw=1, alpha=0.8)
      if i < _MAX_EVENT_LABELS:
        ax.annotate(f"{name} @ {frames / 1e6:.3g}M", (frames / 1e6, 0.98), xycoords=("data", "axes fraction"),
                    rotation=90, va="top", ha="right", color=mark_color, fontsize=7)
    counts = sorted(set(seeds.values()))
    few = any(stats.few(n) for n in counts)
    ax.set_title(f"{game} · {'/'.join(map(str, counts))} seed{'s' if counts != [1] else ''}"
                 f"{stats.FEW_RUNS_MARK if few else ''}", fontsize=10)
    ax.set_xlabel("environment frames (millions)", fontsize=8)
    ax.set_ylabel("evaluation return", fontsize=8)
    ax.grid(alpha=0.3)
  for ax in list(axes.flat)[len(games):]:
    ax.set_visible(False)
  variants = sorted(table["variant"].unique())
  handles = [plt.Line2D([], [], color=color[v], lw=2) for v in variants]
  fig.tight_layout()
  fig.legend(handles, variants, loc="lower center", ncol=min(len(variants), 5), frameon=False,
             bbox_to_anchor=(0.5, 1.0), title="mean evaluation return over seeds, 95 % bootstrap CI band over seeds")
  _few_footnote(fig, bool(table["few_runs"].any()))
  return _save(fig, path)
