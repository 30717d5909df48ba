"""Tests of analysis/compute.py: training FLOPs, params and wall-clock per variant beside its IQM."""

import json
import math
import os

import numpy as np
import pandas as pd
import pytest

from plasticity_rl.analysis import aggregate
from plasticity_rl.analysis import compute
from plasticity_rl.analysis import load
from plasticity_rl.analysis import tables

from test_analysis import SMALL, _tidy, _write_workdir  # pylint: disable=g-bad-import-order

# Known answers: variant -> (train FLOPs of seed s = base * (1 + s), updates, params_total, params_trainable).
COSTS = {"baseline": (4.0e12, 1000, 800, 800), "grow": (1.0e12, 1000, 900, 500), "small": (0.5e12, 1000, 200, 200)}


def _sweep(tmp_path, variants=tuple(COSTS), seeds=(0, 1, 2), no_summary=(), no_flops=(), num_seeds=1):
  """Workdirs ROOT/<game>/<variant>/seed_<s> with eval.csv and (unless left out) a summary.json."""
  df = _tidy(variants=variants, games=("Pong", "Breakout"), seeds=seeds)
  for (variant, game, seed), rows in df.groupby(["variant", "game", "seed"]):
    workdir = tmp_path / "runs" / game / variant / f"seed_{seed}"
    _write_workdir(workdir, rows)
    if (variant, game, seed) in no_summary:
      continue
    flops, updates, total, trainable = COSTS[variant]
    summary = {"game": game, "variant": variant, "seed": int(seed), "updates": updates, "params_total": total,
               "params_trainable": trainable, "params_frozen": total - trainable, "wall_seconds": 600.0 * num_seeds,
               **({"num_seeds": num_seeds} if num_seeds > 1 else {})}
    if (variant, game, seed) not in no_flops:
      summary["train_flops"] = flops * (1 + seed)
    (workdir / "summary.json").write_text(json.dumps(summary))
  return tmp_path / "runs"


def _analyze(root, compare=None):
  return aggregate.analyze(load.load_results([str(root)]), compare=compare, **SMALL)


def test_compute_table_known_answers(tmp_path):
  analysis = _analyze(_sweep(tmp_path, num_seeds=3))
  table = analysis.compute.set_index("variant")
  assert analysis.reference == "baseline"
  for variant, (flops, updates, total, trainable) in COSTS.items():
    row = table.loc[variant]
    assert row["runs"] == 3 and row["games"] == 2 and row["accounted"] == 6
    assert row["train_flops"] == pytest.approx(flops * 2)  # Seeds 0, 1, 2: (1 + 2 + 3) / 3.
    assert (row["train_flops_min"], row["train_flops_max"]) == pytest.approx((flops, flops * 3))
    assert row["relative_flops"] == pytest.approx(flops / COSTS["baseline"][0])
    assert row["flops_per_update"] == pytest.approx(flops * 2 / updates)
    assert (row["params_total"], row["params_trainable"]) == (total, trainable)
    assert row["wall_seconds_per_run"] == pytest.approx(600.0)  # The process's 1,800 s over its 3 seeds.
    aggregate_row = analysis.aggregate.set_index("variant").loc[variant]
    assert (row["IQM"], row["IQM lo"], row["IQM hi"]) == (aggregate_row["IQM"], aggregate_row["IQM lo"],
                                                          aggregate_row["IQM hi"])
    assert not row["few_runs"]
  text = tables.compute_markdown(analysis.compute, analysis.reference)
  assert "| grow | 3 × 2 games (6 accounted) |" in text and "| 0.25 |" in text and "| 0.125 |" in text and "8 TFLOP [4 TFLOP, 12 TFLOP]" in text
  assert "900 / 500" in text and "10.0 min" in text and "× baseline" in text


def test_compare_sets_the_reference(tmp_path):
  analysis = _analyze(_sweep(tmp_path), compare=["small", "grow"])
  table = analysis.compute.set_index("variant")
  assert analysis.reference == "small"
  assert table.loc["grow", "relative_flops"] == pytest.approx(2.0)
  assert table.loc["small", "relative_flops"] == pytest.approx(1.0)


def test_runs_without_accounting_are_named_not_zero(tmp_path):
  root = _sweep(tmp_path, no_summary={("grow", "Pong", 1)}, no_flops={("grow", "Breakout", 2)})
  analysis = _analyze(root)
  row = analysis.compute.set_index("variant").loc["grow"]
  assert row["accounted"] == 4
  # The four accounted runs: Pong seeds 0, 2 and Breakout seeds 0, 1 -> (1 + 3 + 1 + 2) / 4 of the base.
  assert row["train_flops"] == pytest.approx(COSTS["grow"][0] * 7 / 4)
  assert any("grow game=Pong seed=1 has no summary.json" in g for g in analysis.gaps)
  assert any("grow game=Breakout seed=2: its summary.json has no train_flops" in g for g in analysis.gaps)


def test_a_variant_without_any_accounting_shows_dashes(tmp_path):
  runs = [("small", g, s) for g in ("Pong", "Breakout") for s in range(3)]
  analysis = _analyze(_sweep(tmp_path, no_flops=set(runs)))
  row = analysis.compute.set_index("variant").loc["small"]
  assert row["accounted"] == 0 and math.isnan(row["train_flops"]) and math.isnan(row["relative_flops"])
  assert "| small | 3 × 2 games (0 accounted) | " in tables.compute_markdown(analysis.compute, "baseline")


def test_few_runs_are_flagged(tmp_path):
  analysis = _analyze(_sweep(tmp_path, seeds=(0, 1)))
  assert analysis.compute["few_runs"].all()
  assert "2† × 2 games" in tables.compute_markdown(analysis.compute, analysis.reference)


def test_outputs_written(tmp_path):
  analysis = _analyze(_sweep(tmp_path))
  paths = aggregate.write_outputs(analysis, str(tmp_path / "out"))
  for name in ("compute.md", "compute.csv", "compute.json", "compute.png", "compute.pdf"):
    assert str(tmp_path / "out" / name) in paths and os.path.getsize(tmp_path / "out" / name) > 0, name
  back = pd.read_csv(tmp_path / "out" / "compute.csv")
  assert list(back.columns) == list(compute.COLUMNS)
  np.testing.assert_allclose(back["train_flops"], analysis.compute["train_flops"])
  assert (tmp_path / "out" / "compute.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tidy_csv_input_has_no_accounting_and_no_note(tmp_path):
  path = tmp_path / "results.csv"
  _tidy(variants=("baseline", "grow"), games=("Pong",)).to_csv(path, index=False)
  analysis = aggregate.analyze(load.load_results(csvs=[str(path)]), **SMALL)
  assert (analysis.compute["accounted"] == 0).all()
  assert not any(g.startswith("compute:") for g in analysis.gaps)


def test_flops_text():
  assert tables.flops_text(3.41e15) == "3.41 PFLOP" and tables.flops_text(8.12e11) == "812 GFLOP"
  assert tables.flops_text(float("nan")) == "—"
