"""What a run writes: metrics.jsonl, eval.csv (tidy) and TensorBoard events.

- `metrics.jsonl`: one JSON object per line, {"frames": F, "kind": K, ...}; kind
  "train" (scalars), "episode" (a finished training episode), "event" (an
  intervention such as an injection), "eval" (the mean of one evaluation).
- `eval.csv`: one row per evaluation episode with the columns of EVAL_COLUMNS —
  the one results format that analysis reads.
- `tb/`: the same scalars for TensorBoard, tagged "<kind>/<name>".
Files are appended and flushed at every write, so a crash loses nothing written.
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


class Recorder:
  """Appends rows to the workdir's result files."""

  def __init__(self, workdir: str, tensorboard: bool = True):
    self.workdir = workdir
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
      self._tb = tensorboardX.SummaryWriter(os.path.join(workdir, "tb"))

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
