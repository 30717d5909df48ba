"""Entry point: python -m plasticity_rl.main --config=configs/dqn.py[:arg] --workdir=DIR [--config.x=y …]."""

import re
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from plasticity_rl import config as config_lib
from plasticity_rl.workdir import check_parent_workdir, prepare_workdir, WorkdirError

_CONFIG = config_flags.DEFINE_config_file("config", None, "A configs/*.py file, with an optional :arg.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for this run's results and checkpoints.")
flags.mark_flags_as_required(["config", "workdir"])


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


def _parse_flags(argv):
  """absl's flag parsing, but every error is a short message and exit status 2, never a traceback."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    message = str(e)
    if "Traceback (most recent call last):" in message:  # config_flags: get_config() raised; keep its error.
      lines = [line for line in message.splitlines() if line.strip()]
      message = f"{lines[0]} {lines[-1].strip()}"
  except (AttributeError, KeyError) as e:  # config_flags: --config.x=… where the config has no field x.
    message = _unknown_field_message(argv, e)
  print(f"error: {message}\nPass --helpshort or --helpfull to see help on flags.", file=sys.stderr)
  sys.exit(2)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  try:
    config_lib.validate(config)
    if config.num_seeds > 1:  # --workdir holds the seeds' workdirs (seed_<n>/), each made as a single run's.
      check_parent_workdir(_WORKDIR.value)
    else:
      prepare_workdir(_WORKDIR.value, config)
  except (config_lib.ConfigError, WorkdirError, OSError) as e:  # OSError: e.g. the --config file failed to load.
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  from plasticity_rl import checkpoint  # pylint: disable=g-import-not-at-top
  from plasticity_rl import multi_seed  # pylint: disable=g-import-not-at-top
  from plasticity_rl import train  # pylint: disable=g-import-not-at-top
  logging.info("config:\n%s", config)
  checkpoint.quiet_orbax_logs()
  try:
    if config.num_seeds > 1:
      summaries = multi_seed.train_seeds(config, _WORKDIR.value)
    else:
      summaries = [train.train(config, _WORKDIR.value)]
  except (checkpoint.CheckpointError, WorkdirError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except train.Preempted as e:  # A checkpoint is saved; exit like the signal would (128 + its number).
    print(f"{e}", file=sys.stderr)
    sys.exit(128 + e.signum)
  for summary in summaries:
    _print_summary(summary)


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
