"""The sweep's one error type: bad input or state, raised by every module of the package."""


class SweepError(ValueError):
  """Bad sweep input or state; the message names the game, variant, field or path."""
