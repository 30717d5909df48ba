"""What a run writes: metrics.jsonl, eval.csv (tidy), and its scalars to TensorBoard and Weights & Biases.

- `metrics.jsonl`: one JSON object per line, {"frames": F, "kind": K, ...}; kind
  "train" (scalars), "episode" (a finished training episode), "event" (an
  intervention such as an injection), "eval" (the mean of one evaluation),
  "provenance" (what each process ran on: provenance.py; nested values).
- `eval.csv`: one row per evaluation episode with the columns of EVAL_COLUMNS —
  the one results format that analysis reads.
- Writers (`Writer`): every row's numbers, tagged "<kind>/<name>", at its frame:
  `tb/` for TensorBoard (`log.tensorboard`), an offline or online W&B run under
  `wandb/` (`log.wandb`).
Files are appended and flushed at every write, so a crash loses nothing written.
On resume from a checkpoint at frame F, `truncate_after_frames=F` first drops
the rows past F (and a last line cut by a kill), so the files match the
restored state; TensorBoard is told to purge its events past F. Rows are
written in frame order, so the rows dropped are the file's tail: the file is
cut in place, which needs no free space (a save that failed on a full disk
drops its rows so). A line that cannot be read (not a torn last line) is a
WorkdirError naming the file and line; a write that fails names the file.
"""

import csv
import json
import math
import os
import secrets
from typing import Any, Mapping, Protocol, Sequence

from plasticity_rl.workdir import WorkdirError

EVAL_COLUMNS = ("game", "variant", "seed", "frames", "episode_return", "episode_frames")


def _plain(value: Any) -> Any:
  if hasattr(value, "item"):
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return value


def _lines(path: str) -> list[str]:
  """The complete lines of `path` (a last line without its newline was cut by a kill mid-write: dropped)."""
  with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:  # Garbage bytes: a bad line.
    lines = f.readlines()
  if lines and not lines[-1].endswith("\n"):
    lines.pop()
  return lines


def _bad_line(path: str, number: int, line: str, what: str) -> WorkdirError:
  shown = line.strip()
  shown = shown if len(shown) <= 80 else shown[:79] + "…"
  return WorkdirError(f"{path} line {number}: {what}, got {shown!r}; fix or delete that line, then run the "
                      "same command again")


def _metrics_row(path: str, number: int, line: str) -> dict[str, Any]:
  try:
    row = json.loads(line)
    int(row["frames"])
    return row
  except (ValueError, KeyError, TypeError):
    raise _bad_line(path, number, line, 'not a JSON row with "frames"') from None


def _eval_frames(path: str, number: int, line: str) -> int:
  try:
    return int(next(csv.reader([line]))[EVAL_COLUMNS.index("frames")])
  except (ValueError, IndexError, StopIteration):
    raise _bad_line(path, number, line, f"not a row of {','.join(EVAL_COLUMNS)} with integer frames") from None


def _keep_rows(path: str, frames: int, row_frames, header: bool = False) -> None:
  """Drops the lines of `path` whose row_frames(path, line number, line) > `frames`, and a torn last line.

  When the dropped lines are the file's tail (rows are written in frame order), the file is cut in place
  (no free space needed); else it is rewritten atomically.
  """
  if not os.path.exists(path):
    return
  lines = _lines(path)
  first = 1 if header else 0
  keep = lines[:first] + [l for i, l in enumerate(lines[first:], first + 1)
                          if l.strip() and row_frames(path, i, l) <= frames]
  kept = "".join(keep).encode("utf-8", errors="surrogateescape")
  with open(path, "rb") as f:
    prefix = f.read(len(kept)) == kept
  if prefix:
    os.truncate(path, len(kept))
  else:
    with open(path + ".tmp", "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
      f.writelines(keep)
    os.replace(path + ".tmp", path)


def truncate(workdir: str, frames: int) -> None:
  """Drops the rows of metrics.jsonl and eval.csv past `frames` (−1: every row)."""
  _keep_rows(os.path.join(workdir, "metrics.jsonl"), frames, lambda *line: int(_metrics_row(*line)["frames"]))
  _keep_rows(os.path.join(workdir, "eval.csv"), frames, _eval_frames, header=True)


class Writer(Protocol):
  """Where a Recorder sends each row's numbers, besides metrics.jsonl."""

  def scalars(self, frames: int, values: Mapping[str, float]) -> None:
    """values: {"<kind>/<name>": number} of one row, at `frames`."""

  def flush(self) -> None:
    ...

  def close(self) -> None:
    ...


class TensorBoardWriter:
  """tensorboardX events in `logdir`; `purge_step`: events at or past it (a resumed run's dropped rows) are hidden."""

  def __init__(self, logdir: str, purge_step: int | None = None):
    import tensorboardX  # pylint: disable=g-import-not-at-top
    self._tb = tensorboardX.SummaryWriter(logdir, purge_step=purge_step)

  def scalars(self, frames: int, values: Mapping[str, float]) -> None:
    for tag, value in values.items():
      self._tb.add_scalar(tag, value, global_step=frames)

  def flush(self) -> None:
    self._tb.flush()

  def close(self) -> None:
    self._tb.close()


def import_wandb():
  """The wandb module; ImportError with one line naming config.log.wandb if it is not installed."""
  try:
    import wandb  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ImportError("config.log.wandb: True needs the wandb package: pip install 'plasticity_rl[wandb]' "
                      "(or pip install wandb)") from None
  return wandb


class WandbWriter:
  """One W&B run per workdir, in WORKDIR/wandb/; its x axis is the logged "frames".

  The run's id is kept in WORKDIR/wandb/run_id, so a resumed run (`resume`) continues the same W&B run; rows
  past the checkpoint that a resume drops from metrics.jsonl stay in W&B (it cannot delete), and are logged again.
  """

  def __init__(self, workdir: str, project: str, mode: str, name: str, group: str, config: Mapping[str, Any],
               resume: bool):
    wandb = import_wandb()
    directory = os.path.join(workdir, "wandb")
    os.makedirs(directory, exist_ok=True)
    id_path = os.path.join(directory, "run_id")
    run_id = open(id_path).read().strip() if resume and os.path.exists(id_path) else None
    if not run_id:
      run_id = secrets.token_hex(6)
      with open(id_path, "w") as f:
        f.write(run_id + "\n")
    self._run = wandb.init(project=project, mode=mode, dir=workdir, id=run_id, resume="allow", name=name,
                           group=group, config=dict(config), reinit="create_new",
                           settings=wandb.Settings(silent=True, console="off", disable_git=True, save_code=False,
                                                   x_disable_stats=True))
    self._run.define_metric("frames")
    self._run.define_metric("*", step_metric="frames")

  def scalars(self, frames: int, values: Mapping[str, float]) -> None:
    self._run.log({**values, "frames": frames})

  def flush(self) -> None:
    pass

  def close(self) -> None:
    self._run.finish()


def _numbers(kind: str, row: Mapping[str, Any]) -> dict[str, float]:
  return {f"{kind}/{name}": value for name, value in row.items()
          if name not in ("frames", "kind") and isinstance(value, (int, float)) and not isinstance(value, bool)}


class Recorder:
  """Appends rows to the workdir's result files, and sends their numbers to the writers."""

  def __init__(self, workdir: str, tensorboard: bool = True, truncate_after_frames: int | None = None,
               writers: Sequence[Writer] = ()):
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
    self._writers = list(writers)
    if tensorboard:
      purge = None if truncate_after_frames is None else truncate_after_frames + 1
      self._writers.insert(0, TensorBoardWriter(os.path.join(workdir, "tb"), purge_step=purge))

  @classmethod
  def for_run(cls, workdir: str, config, frames: int, resumed: bool, provenance: Mapping[str, Any]) -> "Recorder":
    """A training run's Recorder: the writers config.log turns on; rows past `frames` dropped on a resume (all
    of them on a fresh start), then the process's provenance row at `frames`."""
    writers = []
    if config.log.wandb:
      name = f"{config.game}/{config.variant}"
      writers.append(WandbWriter(workdir, config.log.wandb_project, config.log.wandb_mode,
                                 name=f"{name}/seed_{config.seed}", group=name, resume=resumed,
                                 config={**json.loads(config.to_json_best_effort()), "provenance": provenance}))
    recorder = cls(workdir, tensorboard=config.log.tensorboard, truncate_after_frames=frames if resumed else -1,
                   writers=writers)
    recorder.write(frames, "provenance", provenance)
    return recorder

  def write(self, frames: int, kind: str, values: Mapping[str, Any]) -> None:
    row = {"frames": int(frames), "kind": kind, **{k: _plain(v) for k, v in values.items()}}
    with _naming(self._metrics.name):
      self._metrics.write(json.dumps(row) + "\n")
      self._metrics.flush()
    numbers = _numbers(kind, row)
    if numbers:
      for writer in self._writers:
        writer.scalars(int(frames), numbers)

  def write_eval(self, rows: list[Mapping[str, Any]]) -> None:
    with _naming(self._eval_file.name):
      for row in rows:
        self._eval.writerow({k: _plain(row[k]) for k in EVAL_COLUMNS})
      self._eval_file.flush()

  def flush(self) -> None:
    for writer in self._writers:
      writer.flush()

  def close(self) -> None:
    self._metrics.close()
    self._eval_file.close()
    for writer in self._writers:
      writer.close()


class _naming:  # pylint: disable=invalid-name
  """Re-raises an OSError of a write (e.g. ENOSPC, which names no file) with the file's path."""

  def __init__(self, path: str):
    self.path = path

  def __enter__(self):
    return self

  def __exit__(self, kind, error, tb):
    if isinstance(error, OSError) and not error.filename:
      raise OSError(error.errno, error.strerror, self.path) from error
    return False


def read_metrics(workdir: str, kind: str | None = None) -> list[dict[str, Any]]:
  """The rows of metrics.jsonl (a torn last line of a running or killed run left out)."""
  path = os.path.join(workdir, "metrics.jsonl")
  rows = []
  for number, line in enumerate(_lines(path), 1):
    if line.strip():
      row = _metrics_row(path, number, line)
      if kind is None or row["kind"] == kind:
        rows.append(row)
  return rows


def read_eval(workdir: str) -> list[dict[str, str]]:
  with open(os.path.join(workdir, "eval.csv"), newline="") as f:
    return list(csv.DictReader(f))
