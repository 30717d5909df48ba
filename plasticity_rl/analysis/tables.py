"""Markdown and LaTeX tables (and gaps.txt) from the analysis DataFrames, and their CSV / JSON copies.

Every table states how many games and runs (per variant) it was computed from; a CI
from fewer than 3 runs per game is marked † with stats.FEW_RUNS_NOTE below the table.
"""

import math
import os
from typing import Sequence

import pandas as pd

from plasticity_rl import atari_games
from plasticity_rl.analysis import stats

_CAPTION = ("Human-normalized final scores; point estimate [95 % CI], stratified bootstrap "
            "over runs within each game (rliable). Optimality gap: lower is better.")
_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}", "—": "---",
                  "†": r"\dag{}", "Δ": r"$\Delta$", "×": r"$\times$"}


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


def write_data(df: pd.DataFrame, stem: str) -> list[str]:
  """`df` as STEM.csv and STEM.json (one object per row, NaN as null); returns both paths."""
  df.to_csv(stem + ".csv", index=False)
  df.to_json(stem + ".json", orient="records", indent=1)
  return [stem + ".csv", stem + ".json"]


def _runs(runs: int) -> str:
  return f"{runs}{stats.FEW_RUNS_MARK if stats.few(runs) else ''}"


def _few_note(any_few: bool) -> str:
  return f"\n{stats.FEW_RUNS_NOTE}\n" if any_few else ""


def aggregate_frame(aggregate: pd.DataFrame) -> pd.DataFrame:
  """variant × IQM/median/mean/optimality gap, each "x.xxx [lo, hi]"; runs marked † when < 3."""
  out = pd.DataFrame({"Variant": aggregate["variant"], "Games": aggregate["games"],
                      "Runs/game": [_runs(r) for r in aggregate["runs"]]})
  for name in ("IQM", "Median", "Mean", "Optimality gap"):
    out[name] = [ci(p, lo, hi) for p, lo, hi in
                 zip(aggregate[name], aggregate[f"{name} lo"], aggregate[f"{name} hi"])]
  return out


def aggregate_markdown(aggregate: pd.DataFrame, same_games: bool = True) -> str:
  warning = ""
  if not same_games:
    warning = ("\n**Variants cover different games** (see gaps.txt): their aggregates are not directly "
               "comparable; --common_games restricts every variant to the games all of them ran.\n")
  few = _few_note(any(stats.few(r) for r in aggregate["runs"]))
  return (f"## Aggregate human-normalized scores\n\n{markdown(aggregate_frame(aggregate))}\n{_CAPTION}\n"
          f"{few}{warning}")


def aggregate_latex(aggregate: pd.DataFrame) -> str:
  few = any(stats.few(r) for r in aggregate["runs"])
  return latex(aggregate_frame(aggregate), _CAPTION + (" " + stats.FEW_RUNS_NOTE if few else ""))


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
  """P(X > Y) [95 % CI] per compared pair; runs marked † when < 3."""
  out = pd.DataFrame({
      "Comparison": [f"P({x} > {y})" for x, y in zip(improvement["x"], improvement["y"])],
      "Estimate [95 % CI]": [ci(p, lo, hi) for p, lo, hi in
                             zip(improvement["P(x > y)"], improvement["lo"], improvement["hi"])],
      "Games": improvement["games"], "Runs X": [_runs(r) for r in improvement["runs x"]],
      "Runs Y": [_runs(r) for r in improvement["runs y"]]})
  few = any(stats.few(r) for r in [*improvement["runs x"], *improvement["runs y"]])
  return ("## Probability of improvement\n\n" + markdown(out) +
          "\nP(X > Y): probability that a run of X beats a run of Y on a game drawn at random "
          "(Mann-Whitney U per game, averaged over games; rliable), 95 % stratified bootstrap CI.\n" +
          _few_note(few))


def _interval(point: float, lo: float, hi: float, digits: str, unit: str = "") -> str:
  if math.isnan(point):
    return "—"
  if math.isnan(lo) or math.isnan(hi):
    return f"{point:+{digits}}{unit} [no CI: 1 seed]"
  return f"{point:+{digits}}{unit} [{lo:+{digits}}, {hi:+{digits}}]"


def poi_line(improvement: pd.DataFrame, x: str, y: str) -> str:
  """'P(X > Y) = p [lo, hi] (G games, N × M runs)' from the improvement table, or '' when it has no such row."""
  rows = improvement[(improvement["x"] == x) & (improvement["y"] == y)] if len(improvement) else improvement
  if not len(rows):
    return ""
  r = rows.iloc[0]
  return (f"P({x} > {y}) = {ci(r['P(x > y)'], r['lo'], r['hi'])} over {r['games']} games, "
          f"{_runs(r['runs x'])} × {_runs(r['runs y'])} runs per game")


def paired_frame(rows: pd.DataFrame) -> pd.DataFrame:
  """One pair's paired.per_game rows as the table: game, seeds, both means, Δ, relative, Δ HNS."""
  x, y = rows["x"].iloc[0], rows["y"].iloc[0]
  return pd.DataFrame({
      "Game": rows["game"], "Seeds": [_runs(n) for n in rows["seeds"]],
      f"{y} (control)": [f"{v:.1f}" for v in rows["y_score"]], f"{x}": [f"{v:.1f}" for v in rows["x_score"]],
      "Δ score [95 % CI]": [_interval(*v, ".1f") for v in zip(rows["delta"], rows["delta_lo"], rows["delta_hi"])],
      "Relative [95 % CI]": [_interval(*v, ".1f", " %") for v in
                             zip(rows["relative"], rows["relative_lo"], rows["relative_hi"])],
      "Δ HNS": [f"{v:+.3f}" for v in rows["delta_hns"]], "Verdict": list(rows["verdict"])})


def paired_markdown(paired: pd.DataFrame, improvement: pd.DataFrame) -> str:
  """Per pair: the per-game table (sorted by relative improvement), what it is from, and P(X > Y)."""
  parts = []
  for (x, y), rows in paired.groupby(["x", "y"], sort=False):
    seeds = sorted(set(rows["seeds"]))
    seed_text = str(seeds[0]) if len(seeds) == 1 else f"{seeds[0]}–{seeds[-1]}"
    poi = poi_line(improvement, x, y)
    parts.append(
        f"## Per-game benefit: {x} vs {y}\n\n{len(rows)} games, {seed_text} paired seeds per game.\n\n"
        f"{markdown(paired_frame(rows))}\nFinal raw score, mean over the seeds both ran. Δ = {x} − {y}; "
        f"relative = Δ / |{y} − random| × 100 %; Δ HNS = Δ / (human − random). 95 % percentile CIs from a "
        f"paired bootstrap over seeds. Sorted by relative improvement. Verdict: {x} better or worse only where "
        f"the CI of Δ excludes 0 over ≥ {stats.MIN_RUNS} seeds, else inconclusive.\n" +
        (f"\n{poi}\n" if poi else "") + _few_note(bool(rows["few_runs"].any())))
  return "\n".join(parts)


def flops_text(flops: float) -> str:
  """A FLOP count with its SI unit: '3.41 PFLOP', '812 GFLOP'; '—' for NaN."""
  if math.isnan(flops):
    return "—"
  for unit, scale in (("EFLOP", 1e18), ("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
    if abs(flops) >= scale:
      return f"{flops / scale:.3g} {unit}"
  return f"{flops:.3g} FLOP"


def _minutes(seconds: float) -> str:
  return "—" if math.isnan(seconds) else f"{seconds / 60:.1f} min"


def compute_frame(table: pd.DataFrame, reference: str) -> pd.DataFrame:
  """compute.compute_table's rows as the table: IQM [CI], training FLOPs, × reference, per update, params, wall."""
  def params(total: float, trainable: float) -> str:
    return "—" if math.isnan(total) else f"{total:,.0f} / {trainable:,.0f}"
  return pd.DataFrame({
      "Variant": table["variant"],
      "Runs": [f"{_runs(r)} × {g} games ({a} accounted)" for r, g, a in
               zip(table["runs"], table["games"], table["accounted"])],
      "IQM [95 % CI]": [ci(p, lo, hi) for p, lo, hi in zip(table["IQM"], table["IQM lo"], table["IQM hi"])],
      "Training FLOPs, mean [min, max]": [
          "—" if math.isnan(m) else f"{flops_text(m)} [{flops_text(lo)}, {flops_text(hi)}]"
          for m, lo, hi in zip(table["train_flops"], table["train_flops_min"], table["train_flops_max"])],
      f"× {reference}": ["—" if math.isnan(r) else f"{r:.3g}" for r in table["relative_flops"]],
      "Per update": [flops_text(f) for f in table["flops_per_update"]],
      "Params at end (total / trainable)": [params(t, tr) for t, tr in
                                            zip(table["params_total"], table["params_trainable"])],
      "Wall-clock per run": [_minutes(s) for s in table["wall_seconds_per_run"]]})


def compute_markdown(table: pd.DataFrame, reference: str) -> str:
  """The compute table, what it is from, and the <3-runs note."""
  return ("## Compute: training FLOPs and parameters beside the score\n\n" +
          markdown(compute_frame(table, reference)) +
          "\nRuns: runs per game × games (accounted: those whose summary.json has train_flops). Training FLOPs: "
          "XLA's count of every update's FLOPs at the structure it ran with (compute_cost.py), mean over the "
          f"accounted runs; × {reference}: its ratio to {reference}'s mean. Per update: total FLOPs / total "
          "updates. Params at end: the mean over runs (frozen branches count in the total). Wall-clock: each "
          "process's wall time divided by the seeds it ran (machine-dependent; FLOPs are not). IQM: "
          "human-normalized, 95 % stratified-bootstrap CI (rliable), as in the aggregate table.\n" +
          _few_note(bool(table["few_runs"].any())))


def gaps_text(gaps: Sequence[str]) -> str:
  if not gaps:
    return "Gaps: none (every variant has every game and seed; nothing left out).\n"
  return f"Gaps ({len(gaps)}):\n" + "".join(f"- {line}\n" for line in gaps)
