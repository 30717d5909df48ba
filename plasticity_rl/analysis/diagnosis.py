"""The plasticity diagnosis report: one saved agent branched into "continue" and "inject", before vs after.

Nikishin et al. (2023)'s test for plasticity loss: continue training a saved
agent as it is, and, from the same checkpoint, with a plasticity injection at
once. If the injected branch learns (its return rises) where the continued one
does not, the agent had lost plasticity. plasticity_rl/diagnose.py runs the
branches; this module reads their logs and the source run's (recorder.py's
readers), compares window means — before the branch point (the source's logs)
and after it (each branch's) — and writes the table, the verdict and the plot.

The verdict needs a CI that excludes zero: `difference` pairs the two branches'
evaluations after the branch point by frame (both evaluate on the same schedule) and
bootstraps the mean of inject − continue over those evaluations (stats.resample_means);
with fewer than stats.MIN_RUNS of them, or a CI that includes 0, the verdict is
"inconclusive". The evaluations are one seed's, over time: a CI over seeds is the
aggregate's `--paired=X+inject:X+continue` on several diagnoses (docs/diagnosis.md).
"""

import dataclasses
import math
import os
from typing import Any, Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

from plasticity_rl import recorder
from plasticity_rl.analysis import stats

BRANCHES = ("continue", "inject")
METRICS = {"eval_return": "eval return", "train_return": "training episode return", "loss": "loss (train rows)"}
_STYLES = {"source": ("0.45", "-", "o"), "continue": ("C0", "-", "o"), "inject": ("C3", "--", "s")}

Points = list[tuple[int, float]]


@dataclasses.dataclass(frozen=True)
class Logs:
  """One run's logged series as (frames, value), its events, and its "run" row."""

  eval_return: Points  # Mean of each evaluation (eval.csv).
  train_return: Points  # Each training episode's raw return ("episode" rows).
  loss: Points  # Mean loss of each "train" row (rows before learning starts have none).
  events: list[dict[str, Any]]
  run: dict[str, Any] | None


def _finite(value) -> float | None:
  try:
    value = float(value)
  except (TypeError, ValueError):
    return None
  return value if math.isfinite(value) else None


def read_logs(workdir: str | None) -> Logs:
  """A workdir's metrics.jsonl and eval.csv; missing files (or workdir None) give empty series."""
  rows = []
  if workdir and os.path.exists(os.path.join(workdir, "metrics.jsonl")):
    rows = recorder.read_metrics(workdir)
  by_frames: dict[int, list[float]] = {}
  if workdir and os.path.exists(os.path.join(workdir, "eval.csv")):
    for row in recorder.read_eval(workdir):
      by_frames.setdefault(int(row["frames"]), []).append(float(row["episode_return"]))
  series = lambda kind, key: [(int(r["frames"]), v) for r in rows
                              if r["kind"] == kind and (v := _finite(r.get(key))) is not None]
  return Logs(eval_return=[(f, float(np.mean(v))) for f, v in sorted(by_frames.items())],
              train_return=series("episode", "episode_return"), loss=series("train", "loss"),
              events=[r for r in rows if r["kind"] == "event"],
              run=next((r for r in rows if r["kind"] == "run"), None))


def window_mean(points: Points, lo: int, hi: int) -> tuple[float | None, int]:
  """(mean, count) of the values with lo < frames ≤ hi; (None, 0) when there are none."""
  values = [v for f, v in points if lo < f <= hi]
  return (float(np.mean(values)) if values else None), len(values)


def compare(source: Logs, branches: Mapping[str, Logs], branch_frames: int, window_frames: int,
            end_frames: int) -> dict[str, dict[str, dict[str, Any]]]:
  """{branch: {metric: {before, after, delta, n_before, n_after}}}.

  before: the source's mean over (branch_frames − window_frames, branch_frames];
  after: the branch's mean over (branch_frames, end_frames]; delta: after − before.
  """
  out = {}
  for name, logs in branches.items():
    out[name] = {}
    for metric in METRICS:
      before, n_before = window_mean(getattr(source, metric), branch_frames - window_frames, branch_frames)
      after, n_after = window_mean(getattr(logs, metric), branch_frames, end_frames)
      delta = None if before is None or after is None else after - before
      out[name][metric] = {"before": before, "after": after, "delta": delta, "n_before": n_before,
                           "n_after": n_after}
  return out


def difference(branches: Mapping[str, Logs], branch_frames: int, end_frames: int, reps: int = 10_000,
               seed: int = 0) -> dict[str, Any]:
  """inject − continue over the evaluations both branches made in (branch_frames, end_frames], paired by frame.

  {delta: the mean difference, lo, hi: its 95 % bootstrap CI (None with fewer than
  stats.MIN_RUNS evaluations), n: how many evaluations, frames: which}.
  """
  after = {name: {f: v for f, v in branches[name].eval_return if branch_frames < f <= end_frames}
           for name in BRANCHES}
  frames = sorted(set(after["inject"]) & set(after["continue"]))
  diffs = np.array([after["inject"][f] - after["continue"][f] for f in frames])
  out = {"delta": float(diffs.mean()) if len(diffs) else None, "lo": None, "hi": None, "n": len(frames),
         "frames": frames}
  if len(diffs) >= stats.MIN_RUNS:
    lo, hi = stats.percentile_ci(stats.resample_means(diffs, reps, seed))
    out.update(lo=float(lo), hi=float(hi))
  return out


def verdict(stats_: Mapping[str, Mapping[str, Mapping[str, Any]]],
            diff: Mapping[str, Any]) -> tuple[str, bool | None]:
  """(a one-line verdict, plasticity loss shown?) from the eval returns of both branches (`compare`'s stats)
  and their paired difference (`difference`).

  True when the 95 % CI of inject − continue lies above 0, False when below;
  None ("inconclusive") when it includes 0, when there are fewer than
  stats.MIN_RUNS paired evaluations for a CI, or when a branch has none.
  """
  inject, cont = stats_["inject"]["eval_return"], stats_["continue"]["eval_return"]
  if inject["after"] is None or cont["after"] is None or not diff["n"]:
    return "inconclusive: a branch has no evaluation after the branch point", None
  if inject["delta"] is not None and cont["delta"] is not None:
    numbers = f"{inject['delta']:+.2f} return (inject) vs {cont['delta']:+.2f} (continue)"
  else:  # No evaluation before the branch point in the source's logs: compare the levels.
    numbers = f"{inject['after']:.2f} return (inject) vs {cont['after']:.2f} (continue) after the branch point"
  n = diff["n"]
  if diff["lo"] is None:
    return (f"inconclusive: {numbers}, inject − continue {diff['delta']:+.2f} from {n} paired evaluation(s) "
            f"after the branch point; a CI needs at least {stats.MIN_RUNS} (more --extra_frames or a shorter "
            "eval.period_frames)"), None
  ci = f"inject − continue {diff['delta']:+.2f} [95 % CI {diff['lo']:+.2f}, {diff['hi']:+.2f}] over {n} evaluations"
  if diff["lo"] > 0:
    return f"learning resumes with injection: {numbers}; {ci} — a sign of plasticity loss", True
  if diff["hi"] < 0:
    return f"no sign of plasticity loss: continuing beats injecting, {numbers}; {ci}", False
  return f"inconclusive: {numbers}; {ci}, a CI that includes 0", None


def _cell(value: float | None, n: int, digits: str) -> str:
  return "–" if value is None else f"{value:{digits}} (n={n})"


def _delta(value: float | None, digits: str) -> str:
  return "–" if value is None else f"{value:+{digits}}"


def _frames(lo: int, hi: int) -> str:
  return f"({max(lo, 0):,}, {hi:,}]"


def markdown_table(report: Mapping[str, Any]) -> str:
  """The side-by-side table: before (the source) | continue after, Δ | inject after, Δ; one row per metric."""
  b, w, e = report["branch_frames"], report["window_frames"], report["end_frames"]
  lines = [f"| metric | before: source {_frames(b - w, b)} | continue {_frames(b, e)} | Δ continue "
           f"| inject {_frames(b, e)} | Δ inject |", "|---|---:|---:|---:|---:|---:|"]
  for metric, label in METRICS.items():
    digits = ".4g" if metric == "loss" else ".2f"
    cont, inject = report["branches"]["continue"][metric], report["branches"]["inject"][metric]
    lines.append(f"| {label} | {_cell(cont['before'], cont['n_before'], digits)} "
                 f"| {_cell(cont['after'], cont['n_after'], digits)} | {_delta(cont['delta'], digits)} "
                 f"| {_cell(inject['after'], inject['n_after'], digits)} | {_delta(inject['delta'], digits)} |")
  return "\n".join(lines)


def injection_line(report: Mapping[str, Any]) -> str:
  injection = report["injection"]
  if injection.get("frames") is None:
    return f"injection: NOT FOUND in the inject branch's events (expected at {injection['expected_frames']:,} frames)"
  where = ("the first step after the branch point" if injection["frames"] == injection["expected_frames"]
           else f"expected {injection['expected_frames']:,}")
  return (f"injection @ {injection['frames']:,} frames ({where}): max |ΔQ| {injection['max_abs_dq']:.1e} online, "
          f"{injection['max_abs_dq_target']:.1e} target")


def markdown(report: Mapping[str, Any]) -> str:
  """diagnosis.md: what was branched, the table, the injection check and the verdict."""
  s, b, w, e = report["source"], report["branch_frames"], report["window_frames"], report["end_frames"]
  return "\n".join([
      f"# Plasticity diagnosis: {s['game']} · {s['variant']} · seed {s['seed']}", "",
      f"- source: `{s['checkpoint']}` ({b:,} frames)",
      f"- branches: `continue`, `inject` (reincarnated with load=all), {report['extra_frames']:,} frames each, "
      f"to {e:,}",
      f"- before: the source's logs in {_frames(b - w, b)}; after: each branch's logs in {_frames(b, e)}; "
      "n = evaluations, episodes or train rows averaged", "",
      markdown_table(report), "",
      injection_line(report), "",
      f"**verdict: {report['verdict']}**", "",
      "![diagnosis](diagnosis.png)", ""])


def _with_start(points: Points, start: tuple[int, float] | None) -> Points:
  return ([start] if start is not None else []) + points


def plot(source: Logs, branches: Mapping[str, Logs], report: Mapping[str, Any], path: str) -> str:
  """Eval return and loss vs frames: the source up to the branch point, then both branches; the point marked."""
  b, w, e = report["branch_frames"], report["window_frames"], report["end_frames"]
  fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=120)
  for ax, metric, ylabel in ((axes[0], "eval_return", "evaluation return (mean)"),
                             (axes[1], "loss", "training loss (mean of a log period)")):
    before = [(f, v) for f, v in getattr(source, metric) if f <= b]
    start = before[-1] if before else None
    curves = [("source", before)] + [(name, _with_start([(f, v) for f, v in getattr(logs, metric) if b < f <= e],
                                                         start)) for name, logs in branches.items()]
    for name, points in curves:
      if points:
        color, line, marker = _STYLES[name]
        ax.plot(*zip(*points), ls=line, marker=marker if len(points) <= 40 else None, ms=4, color=color, label=name)
    ax.axvspan(max(b - w, 0), b, color="0.92", zorder=0, label="'before' window")
    ax.axvline(b, color="k", ls="--", lw=1)
    ax.annotate(f"branch point ({b:,})", (b, 1.0), xycoords=("data", "axes fraction"), rotation=90, va="top",
                ha="right", fontsize=8)
    ax.set_xlabel("environment frames")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # Below the axes: it hides no curve and no label.
      ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=4, frameon=False)
  s = report["source"]
  fig.suptitle(f"Plasticity diagnosis: {s['game']} · {s['variant']} · seed {s['seed']}\n{report['verdict']}",
               fontsize=9)
  fig.tight_layout()
  fig.savefig(path)
  fig.savefig(os.path.splitext(path)[0] + ".pdf")  # diagnosis.pdf beside diagnosis.png.
  plt.close(fig)
  return path
