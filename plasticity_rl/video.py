"""Evaluation videos (config.eval.record_video): MP4s of evaluation episodes in WORKDIR/videos/.

A recorded evaluation writes `<frames>_ep<k>.mp4` for its episodes on eval envs 0 … eval.video_episodes − 1
(<frames>: the training frames of the evaluation). The eval envs render the emulator's full RGB screen
(210×160; envpool's render_mode="rgb_array", set only when record_video is on: the observations are the same),
one image per agent step: the episode's first screen and the screen after each step up to its last, so an
episode of F frames gives F/4 + 1 images, played at 15 fps (the emulator's 60 Hz over the frame skip of 4).
Recorded: the first evaluation at or after each of eval.video_frames, or only the final one when it is empty.
"""

import os
import warnings

import numpy as np

FPS = 15


def video_path(workdir: str, frames: int, episode: int) -> str:
  return os.path.join(workdir, "videos", f"{frames}_ep{episode}.mp4")


def write_mp4(path: str, images: list[np.ndarray], fps: int = FPS) -> None:
  """uint8 [H, W, 3] (or [H, W]) images as an H.264 MP4 at `path`, written beside it and renamed over it."""
  import imageio.v2 as imageio  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = f"{path}.tmp.mp4"
  with warnings.catch_warnings():  # JAX warns of any fork; this one (ffmpeg's) is followed at once by an exec.
    warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
    with imageio.get_writer(tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264", macro_block_size=1) as writer:
      for image in images:
        writer.append_data(np.asarray(image, np.uint8))
  os.replace(tmp, path)


class EpisodeVideos:
  """Collects, while `train.evaluate` steps the eval envs, the images of the first episode on envs 0 … k − 1
  (`paths`: one MP4 each), and writes each episode's MP4 when it ends."""

  def __init__(self, paths: list[str]):
    self.paths = paths
    self.images: list[list[np.ndarray]] = [[] for _ in paths]
    self.done = [False] * len(paths)

  def add(self, envs, step) -> None:
    """The screens of envs 0 … k − 1 after `step` (an atari.EnvStep of `envs`, made with render=True)."""
    recording = [i for i, done in enumerate(self.done) if not done]
    if not recording:
      return
    for i, image in zip(recording, envs.render(env_ids=recording)):
      self.images[i].append(image)
      if step.last[i]:
        write_mp4(self.paths[i], self.images[i])
        self.images[i], self.done[i] = [], True


def due(config, workdir: str, frames: int, previous_eval_frames: int) -> EpisodeVideos | None:
  """The videos of the evaluation at `frames` (the one before it was at `previous_eval_frames`; 0 if none), or None
  if this evaluation is not recorded."""
  if not config.eval.record_video:
    return None
  marks = config.eval.video_frames or (config.total_frames,)
  if not any(previous_eval_frames < mark <= frames for mark in marks):
    return None
  return EpisodeVideos([video_path(workdir, frames, k) for k in range(config.eval.video_episodes)])
