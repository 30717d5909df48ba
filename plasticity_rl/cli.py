"""What every command-line tool of the package shares: absl flags, one-line errors, --help, --config paths.

  * Flags are absl flags; a list is comma-separated (`flags.DEFINE_list`: `--runs=a,b`).
  * Every input error is one line on stderr, `error: …`, with exit status 2 (`fail`), never a traceback:
    an unknown flag, a bad value, a missing required flag, an unexpected argument.
  * `--help` (also `-h`, `--helpshort`) prints the tool's docstring and its own flags on stdout, exit 0.
  * A `--config=PATH[:arg]` whose PATH does not exist relative to the current directory is looked up in
    the package's configs directory (`configs/dqn.py`, `dqn.py` → plasticity_rl/configs/dqn.py), so the
    commands work from any directory and from an installed package (`config_path`).

A tool: `cli.run(main, __name__)`, or `cli.run(main, __name__, parse=…)` with a parser of its own that
ends in `cli.parse_flags(argv, __name__)`. Its flags are `_X = cli.flag(flags.DEFINE_…, "x", …)`, defined with
absl when the tool runs (`cli.run`), not when its module is imported: the tools share flag names (`--runs`,
`--games`, `--workdir`), and their modules are also libraries that tests and other modules import together.
"""

import importlib.util
import os
import re
import sys
from typing import Any, Callable, Sequence

from absl import app
from absl import flags

CONFIGS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
_HELP = ("--help", "-help", "-h", "--helpshort", "-helpshort", "-?")


_PENDING: dict[str, list[Callable[[], Any]]] = {}  # Module name -> its flags' definitions, run by cli.run.


class LazyFlag:
  """A tool's flag (`.value`, as absl's FlagHolder), defined with absl by `define_flags` when the tool runs."""

  def __init__(self, name: str):
    self.name, self.holder = name, None

  @property
  def value(self):
    if self.holder is None:
      raise RuntimeError(f"flag --{self.name} read before its tool ran (cli.run defines it)")
    return self.holder.value


def load_file(path: str, name: str):
  """The Python file at `path` executed as a module named `name` (a config or variants file, as config_flags
  loads it: by path, not through sys.path)."""
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def flag(define: Callable[..., Any], name: str, *args, required: bool = False, **kwargs) -> LazyFlag:
  """`define(name, *args, **kwargs)` (a flags.DEFINE_… function), deferred to `define_flags` of the caller's module."""
  module_name = sys._getframe(1).f_globals["__name__"]  # pylint: disable=protected-access
  lazy = LazyFlag(name)

  def run():
    lazy.holder = define(name, *args, module_name=module_name, required=required, **kwargs)

  _PENDING.setdefault(module_name, []).append(run)
  return lazy


def mark_required(names: Sequence[str]) -> None:
  """flags.mark_flags_as_required(names), deferred with the caller's module's flags."""
  module_name = sys._getframe(1).f_globals["__name__"]  # pylint: disable=protected-access
  _PENDING.setdefault(module_name, []).append(lambda: flags.mark_flags_as_required(list(names)))


def define_flags(module_name: str) -> None:
  """Defines the flags `flag` deferred for `module_name` (once)."""
  for run in _PENDING.pop(module_name, []):
    run()


def one_line(text) -> str:
  return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def fail(message, status: int = 2):
  """Prints `error: message` (one line) on stderr and exits with `status` (2: bad input)."""
  print(f"error: {one_line(message)}", file=sys.stderr)
  sys.exit(status)


def config_path(path: str) -> str:
  """PATH if it exists; else the file of that name in the package's configs (configs/X.py or X.py); else PATH."""
  expanded = os.path.expanduser(path)
  if os.path.exists(expanded) or os.path.isabs(expanded):
    return expanded
  parts = os.path.normpath(expanded).split(os.sep)
  if parts[0] == "configs":
    parts = parts[1:]
  candidate = os.path.join(CONFIGS_DIR, *parts) if parts else ""
  return candidate if candidate and os.path.isfile(candidate) else expanded


def config_spec(spec: str) -> str:
  """'PATH[:arg]' with PATH resolved by config_path."""
  path, sep, arg = spec.partition(":")
  return config_path(path) + sep + arg


def resolve_config_args(argv: Sequence[str], name: str = "config") -> list[str]:
  """argv with the value of every --NAME=PATH[:arg] (or --NAME PATH[:arg]) resolved by config_spec."""
  out, argv = [], list(argv)
  for i, arg in enumerate(argv):
    match = re.match(rf"^(--?{re.escape(name)}=)(.*)$", arg)
    if match:
      arg = match.group(1) + config_spec(match.group(2))
    elif i > 0 and re.match(rf"^--?{re.escape(name)}$", argv[i - 1]):
      arg = config_spec(arg)
    out.append(arg)
  return out


def print_help(module_name: str) -> None:
  """The tool's docstring and its own flags (those defined in `module_name`), on stdout."""
  module = sys.modules.get(module_name)
  doc = (getattr(module, "__doc__", None) or "").strip()
  if doc:
    print(doc + "\n")
  lines = (flags.FLAGS.module_help(module) if module is not None else "").strip("\n").splitlines()
  if lines and lines[0].endswith(":") and not lines[0].startswith(" "):
    lines = lines[1:]  # absl's "module.name:" line.
  print("flags:\n" + ("\n".join(lines) if lines else "  (none)") + "\n\n--helpfull lists absl's own flags too.")


def wants_help(argv: Sequence[str]) -> bool:
  """Whether argv asks for --help (or -h, --helpshort, -?)."""
  return any(arg in _HELP for arg in argv[1:])


def parse_flags(argv: Sequence[str], module_name: str) -> list[str]:
  """absl's parsing of argv (--config resolved), --help handled, every error one line, exit 2; returns the rest."""
  if wants_help(argv):
    flags.FLAGS.mark_as_parsed()
    print_help(module_name)
    sys.exit(0)
  try:
    return flags.FLAGS(resolve_config_args(argv))
  except flags.Error as e:
    fail(f"{e} (--help lists the flags)")


def no_arguments(argv: Sequence[str]) -> None:
  """Exits 2 when argv holds anything but the program name (settings are flags)."""
  if len(argv) > 1:
    fail(f"unexpected argument(s) {list(argv[1:])}: settings are flags (--name=value); --help lists them")


def run(main: Callable[[list[str]], int | None], module_name: str,
        parse: Callable[[list[str]], list[str]] | None = None, argv: Sequence[str] | None = None) -> None:
  """app.run(main) with this module's parsing (or `parse`); main's return value is the exit status."""
  define_flags(module_name)
  parser = parse or (lambda args: parse_flags(args, module_name))
  app.run(main, argv=list(argv) if argv is not None else None, flags_parser=parser)

