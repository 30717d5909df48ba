"""One run: plasticity-rl --config=FILE[:arg] --workdir=DIR [--config.x=y …] (= python -m plasticity_rl.main).

  --config=FILE[:arg]   a config file and its optional argument (configs/dqn.py:demo, configs/compare.py:redo,cpu)
  --workdir=DIR         the run's directory (config.json, metrics.jsonl, eval.csv, checkpoints/, summary.json);
                        the same command again resumes the run there
  --config.x.y=VALUE    overrides one field of that config, e.g. --config.game=Pong, --config.learner.replay_ratio=0.5,
                        --config.injection.frames='(1000000,)' (tuples in quotes); any number of them
  --config_help         lists every field of the config (with the overrides): its value and what it means; no run
                        (plasticity-rl --config=configs/dqn.py --config_help)

At start the console names the overrides (the fields that differ from the config file's values); config.json
holds the whole config.

Every failure is one line on stderr: "error: …" with exit status 2 for bad input (flags, config, a workdir
made with another config, one another process is using, damaged files, unusable checkpoints), 1 for a save
that failed (e.g. a full disk); a run stopped by SIGTERM/SIGINT saves a checkpoint and exits 128 + the
signal's number. Nothing is written before the config, the workdir and a reincarnation source have been read.
"""

import logging as std_logging
import os
import re
import sys
import traceback

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from plasticity_rl import cli
from plasticity_rl import config as config_lib
from plasticity_rl import fields as fields_lib
from plasticity_rl import workdir as workdir_lib

_CONFIG = config_flags.DEFINE_config_file("config", None, "A configs/*.py file, with an optional :arg.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for this run's results and checkpoints (required).")
_CONFIG_HELP = flags.DEFINE_bool("config_help", False, "List every field of --config's config (value, meaning) and "
                                 "exit, without a run (no --workdir needed).")
flags.mark_flags_as_required(["config"])


def _unknown_field_message(argv, error: Exception) -> str:
  """Names the --config.x override whose field the config lacks (config_flags raises a bare KeyError)."""
  while error.args and isinstance(error.args[0], Exception):  # AttributeError(KeyError(KeyError(…))).
    error = error.args[0]
  lines = str(error.args[0] if error.args else error).splitlines() or [""]
  key, hint = lines[0].strip("'\""), " ".join(lines[1:])
  overrides = [m.group(1) for m in (re.match(r"^--?config\.([^=\s]+)", a) for a in argv[1:]) if m]
  field = next((o for o in overrides if key in o.split(".")), None)
  if field is None:
    return f"unknown config field {key!r} in the overrides {overrides}" + (f"; {hint}" if hint else "")
  return f"flag --config.{field}: the config has no field {key!r}" + (f"; {hint}" if hint else "")


def _config_file(argv) -> str | None:
  """The path of --config=PATH[:arg] on the command line (the last one given, as absl takes it)."""
  path = None
  for i, arg in enumerate(argv[1:], 1):
    match = re.match(r"^--?config(=(.*))?$", arg)
    if match:
      value = match.group(2) if match.group(1) else (argv[i + 1] if i + 1 < len(argv) else "")
      path = value.split(":", 1)[0]
  return path


def _config_file_error(path: str | None, error: BaseException) -> str | None:
  """'--config file PATH line N: Type: message' when `error` was raised by the config file itself."""
  if not path:
    return None
  path = os.path.abspath(path)
  if isinstance(error, SyntaxError) and error.filename and os.path.abspath(error.filename) == path:
    return f"--config file {path} line {error.lineno}: SyntaxError: {error.msg}"
  lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__)
           if os.path.abspath(frame.filename) == path]
  if lines:
    return f"--config file {path} line {lines[-1]}: {type(error).__name__}: {cli.one_line(error)}"
  return None


def _parse_flags(argv):
  """absl's flag parsing, but every error is one line and exit status 2, never a traceback."""
  argv = cli.resolve_config_args(argv)  # A --config path not found here is looked up in the package's configs.
  if cli.wants_help(argv):
    flags.FLAGS.mark_as_parsed()
    cli.print_help(__name__)  # The docstring and this module's flags (absl's lists only __main__'s key flags).
    sys.exit(0)
  path = _config_file(argv)
  if path and not os.path.isfile(path):
    cli.fail(f"--config file {path}: no such file" if not os.path.exists(path) else f"--config {path}: not a file")
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    message = str(e)
    if "Traceback (most recent call last):" in message:  # config_flags: get_config() raised; keep its error.
      lines = [line for line in message.splitlines() if line.strip()]
      frames = [m for m in (re.search(r'File "([^"]*)", line (\d+)', line) for line in lines) if m]
      where = [m.group(2) for m in frames if path and os.path.abspath(m.group(1)) == os.path.abspath(path)]
      message = f"--config file {path}" + (f" line {where[-1]}" if where else "") + f": {lines[-1].strip()}"
    cli.fail(cli.one_line(message))
  except (AttributeError, KeyError) as e:  # config_flags: --config.x=… where the config has no field x.
    cli.fail(_config_file_error(path, e) or cli.one_line(_unknown_field_message(argv, e)))
  except Exception as e:  # pylint: disable=broad-except  (the config file failed to load, e.g. SyntaxError)
    message = _config_file_error(path, e)
    if message is None:
      raise
    cli.fail(message)


class _QuietBackendProbe(std_logging.Filter):
  """Drops jax's INFO line for each platform it probes and lacks ("Unable to initialize backend 'tpu': …"); its
  warnings (e.g. a GPU without a CUDA jaxlib) and errors pass."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    return record.levelno > std_logging.INFO or not str(record.msg).startswith("Unable to initialize backend")


def quiet_backend_probe() -> None:
  logger = std_logging.getLogger("jax._src.xla_bridge")
  if not any(isinstance(f, _QuietBackendProbe) for f in logger.filters):
    logger.addFilter(_QuietBackendProbe())


def main(argv):
  quiet_backend_probe()
  if len(argv) > 1:
    cli.fail(f"unexpected argument(s) {argv[1:]}: settings are flags (--config.x=…); --help lists them")
  try:
    config = _CONFIG.value
  except OSError as e:  # config_flags defers a failed load of the file to the first access.
    cli.fail(f"--config: {cli.one_line(str(e).splitlines()[-1])}")
  if _CONFIG_HELP.value:
    _print_fields(config)
    return
  workdir = _WORKDIR.value
  if workdir is None:
    cli.fail("flag --workdir is required: the run's directory (--help lists the flags)")
  overrides = _overrides_line(config)
  try:
    config_lib.validate(config)
    if config.num_seeds > 1:  # --workdir holds the seeds' workdirs (seed_<n>/), each made as a single run's.
      workdir_lib.check_parent_workdir(workdir)
    else:
      workdir_lib.check_workdir(workdir, config)
  except (config_lib.ConfigError, workdir_lib.WorkdirError) as e:
    cli.fail(cli.one_line(e))
  logging.info("%s %s; the whole config: %s", flags.FLAGS["config"].config_filename, overrides,
               os.path.join(workdir, "config.json" if config.num_seeds == 1 else "seed_<n>/config.json"))
  for summary in _run(config, workdir):
    _print_summary(summary)


def _run(config, workdir: str):
  """The run's summaries; every failure one line (see the module docstring)."""
  from plasticity_rl import checkpoint  # pylint: disable=g-import-not-at-top
  from plasticity_rl import multi_seed  # pylint: disable=g-import-not-at-top
  from plasticity_rl import recorder as recorder_lib  # pylint: disable=g-import-not-at-top
  from plasticity_rl import train  # pylint: disable=g-import-not-at-top
  checkpoint.quiet_orbax_logs()
  lock = None
  try:
    if config.num_seeds > 1:
      return multi_seed.train_seeds(config, workdir)  # Claims each seed's workdir.
    reincarnated = None
    if config.reincarnate.path and not os.path.exists(os.path.join(workdir, "config.json")):
      reincarnated = _read_source(config, checkpoint)  # Before anything is written: a bad source writes nothing.
    lock = workdir_lib.lock_workdir(workdir)  # Held for the run (the kernel drops it if the process dies).
    workdir_lib.prepare_workdir(workdir, config)  # Checked again, under the lock.
    return [train.train(config, workdir, reincarnated=reincarnated)]
  except (checkpoint.CheckpointError, workdir_lib.WorkdirError) as e:
    cli.fail(cli.one_line(e))
  except checkpoint.SaveError as e:  # Its rows go too, as a resume would drop them: none for a save not made.
    recorder_lib.truncate(os.path.dirname(e.directory), -1 if e.saved is None else e.saved)
    cli.fail(cli.one_line(e), status=1)
  except OSError as e:  # A full disk under metrics.jsonl or summary.json (other OSErrors keep their traceback).
    if not workdir_lib.is_disk_full(e):
      raise
    where = e.filename or workdir
    cli.fail(f"{where}: {e.strerror or e} ({workdir_lib.free_space(where)})", status=1)
  except train.Preempted as e:  # A checkpoint is saved; exit like the signal would (128 + its number).
    print(f"{e}", file=sys.stderr)
    sys.exit(128 + e.signum)
  finally:
    if lock is not None:
      lock.close()


def _preset(path: str, arg: str | None):
  """The config file's own config (its get_config, before the command line's overrides)."""
  module = cli.load_file(path, "plasticity_rl_preset")
  return module.get_config(arg) if arg is not None else module.get_config()


def _overrides_line(config) -> str:
  """'overrides: a.b=1, c=2' (the fields the --config.x flags changed) or 'no overrides'."""
  holder = flags.FLAGS["config"]
  path, sep, arg = holder.config_filename.partition(":")  # What config_flags loaded (and how it splits it).
  return fields_lib.overrides_line(_preset(path, arg if sep else None), config)


def _print_fields(config) -> None:
  lines = fields_lib.listing(config)
  print(f"{flags.FLAGS['config'].config_filename}: {len(lines)} fields, `field = value  meaning` (the comment "
        "where config.py defines it); * marks a value other than base_config()'s, set by the file or a --config.x flag")
  print("\n".join(lines))


def _read_source(config, checkpoint):
  """The agent at config.reincarnate.path, read (and checked against this config) as train would."""
  from plasticity_rl.agents import dqn  # pylint: disable=g-import-not-at-top
  from plasticity_rl.envs import atari  # pylint: disable=g-import-not-at-top
  agent = dqn.make_agent(config, atari.num_actions(config.game, config.eval.protocol))
  return checkpoint.reincarnate(config, agent)


def _print_summary(summary) -> None:
  print(f"\n== {summary['game']} · {summary['variant']} · seed {summary['seed']} ==")
  print(f"frames {summary['frames']:,}  updates {summary['updates']:,}  wall {summary['wall_seconds'] / 60:.1f} min")
  print("evaluation (frames: mean return): " + ", ".join(f"{f:,}: {r:.1f}" for f, r in summary["eval"]))
  print(f"final {summary['final_eval_return']:.1f}  best {summary['best_eval_return']:.1f}  "
        f"params trainable {summary['params_trainable']:,} / total {summary['params_total']:,}")
  if "learning_curve" in summary:
    print(f"learning curve: {summary['learning_curve']}")


def run():
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
