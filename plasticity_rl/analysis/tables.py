"""Markdown and LaTeX tables (and gaps.txt) from the analysis DataFrames."""

from typing import Sequence

import pandas as pd

from plasticity_rl import atari_games

_CAPTION = ("Human-normalized final scores; point estimate [95 % CI], stratified bootstrap "
            "over runs within each game (rliable). Optimality gap: lower is better.")
_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}", "—": "---"}


def ci(point: float, lo: float, hi: float) -> str:
  return f"{point:.3f} [{lo:.3f}, {hi:.3f}]"


def markdown(df: pd.DataFrame) -> str:
  cells = [[str(c).replace("|", r"\|") for c in row] for row in [df.columns, *df.itertuples(index=False)]]
  lines = ["| " + " | ".join(row) + " |" for row in cells]
  lines.insert(1, "|" + "|".join("---" if i == 0 else "---:" for i in range(len(df.columns))) + "|")
  return "\n".join(lines) + "\n"


def latex(df: pd.DataFrame, caption: str) -> str:
  def escape(text) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))
  rows = [" & ".join(escape(c) for c in row) + r" \\" for row in df.itertuples(index=False)]
  return "\n".join([
      r"\begin{table}[t]", r"\centering", r"\small",
      r"\begin{tabular}{l" + "r" * (len(df.columns) - 1) + "}", r"\toprule",
      " & ".join(escape(c) for c in df.columns) + r" \\", r"\midrule", *rows, r"\bottomrule",
      r"\end{tabular}", rf"\caption{{{escape(caption)}}}", r"\end{table}", ""])


def aggregate_frame(aggregate: pd.DataFrame) -> pd.DataFrame:
  """variant × IQM/median/mean/optimality gap, each "x.xxx [lo, hi]"."""
  out = pd.DataFrame({"Variant": aggregate["variant"], "Games": aggregate["games"],
                      "Runs/game": aggregate["runs"]})
  for name in ("IQM", "Median", "Mean", "Optimality gap"):
    out[name] = [ci(p, lo, hi) for p, lo, hi in
                 zip(aggregate[name], aggregate[f"{name} lo"], aggregate[f"{name} hi"])]
  return out


def aggregate_markdown(aggregate: pd.DataFrame, same_games: bool = True) -> str:
  warning = ""
  if not same_games:
    warning = ("\n**Variants cover different games** (see gaps.txt): their aggregates are not directly "
               "comparable; --common_games restricts every variant to the games all of them ran.\n")
  return f"## Aggregate human-normalized scores\n\n{markdown(aggregate_frame(aggregate))}\n{_CAPTION}\n{warning}"


def aggregate_latex(aggregate: pd.DataFrame) -> str:
  return latex(aggregate_frame(aggregate), _CAPTION)


def per_game_frame(final: pd.DataFrame) -> pd.DataFrame:
  """Per game: random and human scores, then per variant mean raw (seeds) and HNS."""
  table = atari_games.score_table()
  means = final.groupby(["game", "variant"]).agg(raw=("score", "mean"), hns=("hns", "mean"), n=("seed", "size"))
  games = sorted(final["game"].unique())
  out = pd.DataFrame({"Game": games, "Random": [f"{table[g].random:.1f}" for g in games],
                      "Human": [f"{table[g].human:.1f}" for g in games]})
  for variant in sorted(final["variant"].unique()):
    raw, hns = [], []
    for game in games:
      if (game, variant) in means.index:
        row = means.loc[(game, variant)]
        raw.append(f"{row['raw']:.1f} ({int(row['n'])})")
        hns.append(f"{row['hns']:.3f}")
      else:
        raw.append("—")
        hns.append("—")
    out[f"{variant} raw (seeds)"], out[f"{variant} HNS"] = raw, hns
  return out


_PER_GAME_CAPTION = ("Final score per game: mean over seeds (count in parentheses) of the raw score "
                     "and of the human-normalized score (HNS); — marks a game with no run.")


def per_game_markdown(final: pd.DataFrame) -> str:
  return f"## Per-game final scores\n\n{markdown(per_game_frame(final))}\n{_PER_GAME_CAPTION}\n"


def per_game_latex(final: pd.DataFrame) -> str:
  return latex(per_game_frame(final), _PER_GAME_CAPTION)


def improvement_markdown(improvement: pd.DataFrame) -> str:
  """P(X > Y) [95 % CI] per compared pair."""
  out = pd.DataFrame({
      "Comparison": [f"P({x} > {y})" for x, y in zip(improvement["x"], improvement["y"])],
      "Estimate [95 % CI]": [ci(p, lo, hi) for p, lo, hi in
                             zip(improvement["P(x > y)"], improvement["lo"], improvement["hi"])],
      "Games": improvement["games"], "Runs X": improvement["runs x"], "Runs Y": improvement["runs y"]})
  return ("## Probability of improvement\n\n" + markdown(out) +
          "\nP(X > Y): probability that a run of X beats a run of Y on a game drawn at random "
          "(Mann-Whitney U per game, averaged over games; rliable), 95 % stratified bootstrap CI.\n")


def gaps_text(gaps: Sequence[str]) -> str:
  if not gaps:
    return "Gaps: none (every variant has every game and seed; nothing left out).\n"
  return f"Gaps ({len(gaps)}):\n" + "".join(f"- {line}\n" for line in gaps)
