"""Plasticity metric curves of several runs side by side, as one PNG.

  plasticity-rl-plot --runs=runs/pong_base,runs/pong_inject \
      --metrics="dormant_0.1/head/dense_0,srank,fau/*" --out=metrics.png

One subplot per metric (a name may be an fnmatch pattern, e.g. "dormant_0.1/*":
one subplot per matching name), one line per run (labelled by its directory, or
--labels), and every event row of a run (injection, reset, …) as a vertical
dashed line in the run's color, frames in millions. The figure is written to --out and, for a
.png path, also as the PDF beside it. Reads the rows of <run>/metrics.jsonl with
kind "plasticity" (--kind to change), {"frames": F, "kind": K, name: value, …}.
A name (or pattern) that no run has is an error naming it and the names there are (exit status 2).
"""

import fnmatch
import json
import math
import os

from absl import flags
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from plasticity_rl import cli  # pylint: disable=g-import-not-at-top

_RUNS = cli.flag(flags.DEFINE_list, "runs", None, "Run directories (each with metrics.jsonl), comma-separated.")
_METRICS = cli.flag(flags.DEFINE_list, "metrics", None, "Metric names or fnmatch patterns, comma-separated.")
_OUT = cli.flag(flags.DEFINE_string, "out", None, "Output PNG path (the PDF is written beside it).")
_LABELS = cli.flag(flags.DEFINE_list, "labels", None, "Labels, one per run (default: the directory names).")
_KIND = cli.flag(flags.DEFINE_string, "kind", "plasticity", "Row kind to read the metrics from.")
_COLUMNS = cli.flag(flags.DEFINE_integer, "columns", 3, "Subplots per row.", lower_bound=1)
cli.mark_required(["runs", "metrics", "out"])


class PlotError(ValueError):
  """Bad input (a run without metrics.jsonl, a metric no run has); the message is one line."""


def _number(value) -> float | None:
  """A logged value as a float: numbers, and the strings "nan"/"inf" the recorder writes for non-finite ones."""
  if isinstance(value, bool):
    return None
  if isinstance(value, (int, float)):
    return float(value)
  if isinstance(value, str):
    try:
      return float(value)
    except ValueError:
      return None
  return None


Series = dict[str, list[tuple[int, float]]]


def read_run(run_dir: str, kind: str = "plasticity") -> tuple[Series, list[tuple[int, str]]]:
  """({metric: [(frames, value)] sorted by frames}, [(frames, event name)]) of one run."""
  series: dict[str, list[tuple[int, float]]] = {}
  events: list[tuple[int, str]] = []
  path = os.path.join(run_dir, "metrics.jsonl")
  if not os.path.isfile(path):
    raise PlotError(f"{run_dir}: no metrics.jsonl (not a run directory)")
  with open(path) as f:
    for line in f:
      if not line.strip():
        continue
      row = json.loads(line)
      if row.get("kind") == "event":
        events.append((int(row["frames"]), str(row.get("name", "event"))))
      elif row.get("kind") == kind:
        for name, value in row.items():
          number = _number(value) if name not in ("frames", "kind") else None
          if number is not None:
            series.setdefault(name, []).append((int(row["frames"]), number))
  return {k: sorted(v) for k, v in series.items()}, sorted(events)


def expand(patterns: list[str], available: set[str]) -> list[str]:
  """Metric names in pattern order; a pattern with wildcards expands to its sorted matches.

  A name or pattern that matches none of `available` is a PlotError naming it and the available names.
  """
  names: list[str] = []
  unknown = []
  for pattern in patterns:
    matches = sorted(fnmatch.filter(available, pattern)) if any(c in pattern for c in "*?[") else (
        [pattern] if pattern in available else [])
    if not matches:
      unknown.append(pattern)
    names += [m for m in matches if m not in names]
  if unknown:
    raise PlotError(f"--metrics: no run has {', '.join(map(repr, unknown))}; available: "
                    f"{', '.join(sorted(available)) or 'none (no rows of this --kind)'}")
  return names


def plot(runs: list[str], patterns: list[str], out: str, labels: list[str] | None = None,
         kind: str = "plasticity", columns: int = 3) -> str:
  data = [read_run(run, kind) for run in runs]
  labels = labels or [os.path.basename(os.path.normpath(run)) or run for run in runs]
  names = expand(patterns, set().union(*(set(series) for series, _ in data)))
  columns = max(1, min(columns, len(names)))
  rows = math.ceil(len(names) / columns)
  fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.2 * rows), squeeze=False)
  for ax, name in zip(axes.flat, names):
    for i, ((series, events), label) in enumerate(zip(data, labels)):
      color = f"C{i % 10}"
      points = series.get(name, [])
      if points:
        ax.plot([f / 1e6 for f, _ in points], [v for _, v in points], color=color, lw=1.5, label=label)
      for frames, event in events:
        ax.axvline(frames / 1e6, color=color, ls="--", lw=1, alpha=0.8)
        ax.annotate(event, (frames / 1e6, 1.0), xycoords=("data", "axes fraction"), rotation=90, va="top",
                    ha="right", color=color, fontsize=7)
    ax.set_title(name, fontsize=9)
    ax.set_xlabel("environment frames (millions)")
    ax.grid(alpha=0.3)
  for ax in list(axes.flat)[len(names):]:
    ax.set_visible(False)
  handles, legend_labels = [], []
  for ax in axes.flat:
    for handle, label in zip(*ax.get_legend_handles_labels()):
      if label not in legend_labels:
        handles.append(handle)
        legend_labels.append(label)
  if handles:
    fig.legend(handles, legend_labels, loc="upper center", ncol=min(len(handles), 4), fontsize=8,
               bbox_to_anchor=(0.5, 1.0))
  fig.tight_layout(rect=(0, 0, 1, 0.95 if handles else 1))
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  fig.savefig(out, dpi=120)
  if out.lower().endswith(".png"):
    fig.savefig(out[:-4] + ".pdf")
  plt.close(fig)
  return out


def main(argv) -> None:
  cli.no_arguments(argv)
  if _LABELS.value is not None and len(_LABELS.value) != len(_RUNS.value):
    cli.fail(f"--labels has {len(_LABELS.value)} entries for {len(_RUNS.value)} runs")
  try:
    print(plot(_RUNS.value, [m for m in _METRICS.value if m], _OUT.value, _LABELS.value, _KIND.value,
               _COLUMNS.value))
  except PlotError as e:
    cli.fail(e)


def run(argv=None):
  cli.run(main, __name__, argv=argv)


if __name__ == "__main__":
  run()
