"""Every config field's meaning, read from the comments of the code that defines it; a config's diff from another.

`meanings()` parses the source of `config.base_config()`: each `c.a.b = value  # comment` (or a block of
`# comment` lines right above it) gives field a.b its meaning. A section made by a function
(`c.reset = remedies.reset_config()`) or filled by one (`_schedule_fields(c)`) is read from that function's
source, under the section's prefix. `plasticity-rl --config=… --config_help` prints `listing(config)`.
"""

import ast
import inspect
import io
import textwrap
import tokenize
from typing import Any, Callable, Iterator

from ml_collections import config_dict


def leaves(c, prefix: str = "") -> Iterator[tuple[str, Any]]:
  """(dotted path, value) of every leaf field, in the config's order."""
  for key, value in c.items():
    if isinstance(value, config_dict.ConfigDict):
      yield from leaves(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


def _comments(source: str) -> dict[int, tuple[str, bool]]:
  """{line number: (comment text, whether the line holds only the comment)}."""
  out = {}
  for token in tokenize.generate_tokens(io.StringIO(source).readline):
    if token.type == tokenize.COMMENT:
      alone = not token.line[:token.start[1]].strip()
      out[token.start[0]] = (token.string.lstrip("#").strip(), alone)
  return out


def _target_path(node: ast.expr, var: str) -> list[str] | None:
  """`c.a.b` -> ["a", "b"] when `c` is `var`; else None."""
  parts = []
  while isinstance(node, ast.Attribute):
    parts.append(node.attr)
    node = node.value
  return parts[::-1] if isinstance(node, ast.Name) and node.id == var and parts else None


def _resolve(node: ast.expr, scope: dict[str, Any]) -> Callable | None:
  """The function a call's `name` or `module.name` refers to in `scope`, if it is plain Python."""
  if isinstance(node, ast.Name):
    found = scope.get(node.id)
  elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in scope:
    found = getattr(scope[node.value.id], node.attr, None)
  else:
    return None
  return found if inspect.isfunction(found) else None


def _meaning(first: int, last: int, comments: dict[int, tuple[str, bool]]) -> str:
  for line in range(first, last + 1):  # A comment on the statement's own lines.
    if line in comments and not comments[line][1]:
      return comments[line][0]
  block, line = [], first - 1  # Else the comment lines right above it.
  while line in comments and comments[line][1]:
    block.insert(0, comments[line][0])
    line -= 1
  return " ".join(block)


def _read(function: Callable, prefix: str, var: str | None, out: dict[str, str]) -> None:
  source = textwrap.dedent(inspect.getsource(function))
  tree = ast.parse(source)
  definition = tree.body[0]
  comments = _comments(source)
  scope = function.__globals__
  if var is None:  # A function that makes its section: the name it returns.
    returns = [n for n in ast.walk(definition) if isinstance(n, ast.Return) and isinstance(n.value, ast.Name)]
    var = returns[-1].value.id if returns else "c"
  for statement in definition.body:
    if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
      path = _target_path(statement.targets[0], var)
      if path is None:
        continue
      name = prefix + ".".join(path)
      out[name] = _meaning(statement.lineno, statement.end_lineno, comments)
      value = statement.value
      if isinstance(value, ast.Call) and (maker := _resolve(value.func, scope)) is not None:
        _read(maker, name + ".", None, out)  # A section made by a function: its fields.
    elif isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call):
      call = statement.value
      filler = _resolve(call.func, scope)
      if filler is None or not call.args:
        continue
      path = [] if isinstance(call.args[0], ast.Name) and call.args[0].id == var else _target_path(call.args[0], var)
      if path is None:
        continue
      params = list(inspect.signature(filler).parameters)
      _read(filler, prefix + "".join(p + "." for p in path), params[0], out)  # Fills a section in place.


def meanings() -> dict[str, str]:
  """{dotted path: one-line meaning} of every field (and section) `config.base_config()` sets."""
  from plasticity_rl import config as config_lib  # pylint: disable=g-import-not-at-top
  from plasticity_rl import interventions  # pylint: disable=g-import-not-at-top
  out: dict[str, str] = {}
  _read(config_lib.base_config, "", None, out)
  for cls in interventions.HOOKS.values():  # Sections base_config adds from the interventions' modules.
    if cls.section and cls.section not in out and cls.config_section() is not None:
      out[cls.section] = (inspect.getdoc(cls) or "").split("\n")[0]
      _read(cls.config_section.__func__, cls.section + ".", None, out)
  return out


def _same(a, b) -> bool:
  if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
    return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
  return a == b and type(a) is type(b) or (a is None and b is None)


def diff(reference, config) -> list[tuple[str, Any]]:
  """(path, value) of every leaf of `config` whose value differs from `reference`'s (or that it lacks)."""
  ours = dict(leaves(reference))
  return [(path, value) for path, value in leaves(config) if path not in ours or not _same(ours[path], value)]


def overrides_line(preset, config) -> str:
  """'overrides: a.b=1, c=2' (the fields the command line changed from the preset) or 'no overrides'."""
  changed = diff(preset, config)
  return ("overrides: " + ", ".join(f"{path}={value!r}" for path, value in changed)) if changed else "no overrides"


def _show(value) -> str:
  """A value as Python, large integers with underscores as config.py writes them (1_000_000)."""
  if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
    return f"{value:_}"
  if isinstance(value, tuple):
    return "(" + ", ".join(_show(v) for v in value) + ("," if len(value) == 1 else "") + ")"
  return repr(value)


def listing(config, base=None, docs: dict[str, str] | None = None) -> list[str]:
  """One line per leaf field: `path = value  meaning`; '*' marks a value other than base_config()'s."""
  from plasticity_rl import config as config_lib  # pylint: disable=g-import-not-at-top
  base = config_lib.base_config() if base is None else base
  docs = meanings() if docs is None else docs
  defaults = dict(leaves(base))
  order = {path: i for i, path in enumerate(docs)}  # The order of the source; fields it lacks last.
  rows = [(("* " if path not in defaults or not _same(defaults[path], value) else "  ") + f"{path} = {_show(value)}",
           docs.get(path) or "(no comment in config.py)")
          for path, value in sorted(leaves(config), key=lambda item: order.get(item[0], len(order)))]
  width = min(max(len(left) for left, _ in rows), 56)
  return [f"{left:<{width}}  {meaning}" for left, meaning in rows]
