"""What a run's workdir shows without asking its process: the newest checkpoint, the frames so far and an ETA.

Read only, never written, and while the run may be writing: `tail_rows` skips a row being written,
`last_checkpoint` counts only whole checkpoint directories.
"""

import datetime
import json
import os
from typing import Any


def last_checkpoint(workdir: str) -> int | None:
  """The frame count of the newest complete checkpoint in workdir/checkpoints (orbax's <step>/), or None."""
  directory = os.path.join(workdir, "checkpoints")
  try:
    names = os.listdir(directory)
  except OSError:
    return None
  return max((int(n) for n in names if n.isdigit() and os.path.isdir(os.path.join(directory, n))), default=None)


def tail_rows(path: str, max_bytes: int = 65_536) -> list[dict[str, Any]]:
  """The whole JSON rows among the last `max_bytes` of a JSON-lines file (a row being written is skipped)."""
  try:
    with open(path, "rb") as f:
      size = f.seek(0, os.SEEK_END)
      f.seek(max(0, size - max_bytes))
      lines = f.read().split(b"\n")
  except OSError:
    return []
  rows = []
  for line in lines[1:] if size > max_bytes else lines:  # The first line read may be cut.
    try:
      row = json.loads(line)
    except ValueError:
      continue
    if isinstance(row, dict):
      rows.append(row)
  return rows


def run_progress(workdir: str) -> str | None:
  """'312,000/400,000 frames (78%), ETA 0:03:10' from a running run's metrics.jsonl tail and config.json: the
  newest row's frames, and the frames left at the fps of its newest train row; None before its first row."""
  rows = tail_rows(os.path.join(workdir, "metrics.jsonl"))
  if not rows:
    return None
  frames = int(rows[-1].get("frames", 0))
  try:
    with open(os.path.join(workdir, "config.json")) as f:
      total = int(json.load(f)["total_frames"])
  except (OSError, ValueError, KeyError, TypeError):
    return f"{frames:,} frames"
  fps = next((r["fps"] for r in reversed(rows) if r.get("kind") == "train" and r.get("fps")), None)
  eta = f", ETA {datetime.timedelta(seconds=int(max(total - frames, 0) / fps))}" if fps else ""
  return f"{frames:,}/{total:,} frames ({100 * frames / max(total, 1):.0f}%){eta}"
