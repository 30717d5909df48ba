"""Results analysis: reads eval.csv files, never training code (no JAX/Flax).

- load: workdirs and tidy CSVs -> one episodes DataFrame (`AnalysisError` on bad input).
- scores: per-frame curves, final scores, human normalization, score matrices, gaps.
- aggregate: rliable metrics with bootstrap CIs, and the CLI
  (`python -m plasticity_rl.analysis.aggregate`, console script `plasticity-rl-aggregate`).
- tables: Markdown / LaTeX tables. plots: PNG figures.
- learning_curve: one run's learning curve.
- diagnosis: the plasticity diagnosis report (plasticity-rl-diagnose: plasticity_rl/diagnose.py, docs/diagnosis.md).
"""
