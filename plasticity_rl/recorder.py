"""What a run writes: metrics.jsonl, eval.csv (tidy) and TensorBoard events.

- `metrics.jsonl`: one JSON object per line, {"frames": F, "kind": K, ...}; kind
  "train" (scalars), "episode" (a finished training episode), "event" (an
  intervention such as an injection), "eval" (the mean of one evaluation).
- `eval.csv`: one row per evaluation episode with the columns of EVAL_COLUMNS —
  the one results format that analysis reads.
- `tb/`: the same scalars for TensorBoard, tagged "<kind>/<name>".
Files are appended and flushed at every write, so a crash loses nothing written.
On resume from a checkpoint at frame F, `truncate_after_frames=F` first drops
the rows past F (and a last line cut by a kill), so the files match the
restored state; TensorBoard is told to purge its events past F.
"""

import csv
import json
import math
import os
from typing import Any, Mapping

EVAL_COLUMNS = ("game", "variant", "seed", "frames", "episode_return", "episode_frames")


def _plain(value: Any) -> Any:
  if hasattr(value, "item"):
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return value


def _keep_rows(path: str, keep, header: bool = False) -> None:
  """Rewrites `path` (atomically) with the complete lines for which keep(line) is True."""
  if not os.path.exists(path):
    return
  with open(path, newline="") as f:
    lines = f.readlines()
  if lines and not lines[-1].endswith("\n"):
    lines.pop()  # Cut by a kill mid-write.
  kept = lines[:1] + [l for l in lines[1:] if keep(l)] if header else [l for l in lines if keep(l)]
  with open(path + ".tmp", "w", newline="") as f:
    f.writelines(kept)
  os.replace(path + ".tmp", path)


def truncate(workdir: str, frames: int) -> None:
  """Drops the rows of metrics.jsonl and eval.csv past `frames` (−1: every row)."""
  _keep_rows(os.path.join(workdir, "metrics.jsonl"), lambda l: l.strip() and json.loads(l)["frames"] <= frames)
  frames_column = EVAL_COLUMNS.index("frames")
  _keep_rows(os.path.join(workdir, "eval.csv"),
             lambda l: int(next(csv.reader([l]))[frames_column]) <= frames, header=True)


class Recorder:
  """Appends rows to the workdir's result files."""

  def __init__(self, workdir: str, tensorboard: bool = True, truncate_after_frames: int | None = None):
    self.workdir = workdir
    if truncate_after_frames is not None:
      truncate(workdir, truncate_after_frames)
    self._metrics = open(os.path.join(workdir, "metrics.jsonl"), "a")
    eval_path = os.path.join(workdir, "eval.csv")
    new = not os.path.exists(eval_path) or os.path.getsize(eval_path) == 0
    self._eval_file = open(eval_path, "a", newline="")
    self._eval = csv.DictWriter(self._eval_file, fieldnames=EVAL_COLUMNS)
    if new:
      self._eval.writeheader()
      self._eval_file.flush()
    self._tb = None
    if tensorboard:
      import tensorboardX  # pylint: disable=g-import-not-at-top
      purge = None if truncate_after_frames is None else truncate_after_frames + 1
      self._tb = tensorboardX.SummaryWriter(os.path.join(workdir, "tb"), purge_step=purge)

  def write(self, frames: int, kind: str, values: Mapping[str, Any]) -> None:
    row = {"frames": int(frames), "kind": kind, **{k: _plain(v) for k, v in values.items()}}
    self._metrics.write(json.dumps(row) + "\n")
    self._metrics.flush()
    if self._tb is not None:
      for name, value in row.items():
        if name not in ("frames", "kind") and isinstance(value, (int, float)) and not isinstance(value, bool):
          self._tb.add_scalar(f"{kind}/{name}", value, global_step=int(frames))

  def write_eval(self, rows: list[Mapping[str, Any]]) -> None:
    for row in rows:
      self._eval.writerow({k: _plain(row[k]) for k in EVAL_COLUMNS})
    self._eval_file.flush()

  def flush(self) -> None:
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    self._metrics.close()
    self._eval_file.close()
    if self._tb is not None:
      self._tb.close()


def read_metrics(workdir: str, kind: str | None = None) -> list[dict[str, Any]]:
  rows = []
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    for line in f:
      if line.strip():
        row = json.loads(line)
        if kind is None or row["kind"] == kind:
          rows.append(row)
  return rows


def read_eval(workdir: str) -> list[dict[str, str]]:
  with open(os.path.join(workdir, "eval.csv"), newline="") as f:
    return list(csv.DictReader(f))
