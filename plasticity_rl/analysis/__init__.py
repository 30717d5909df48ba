"""Results analysis: reads eval.csv files, never training code (no JAX/Flax).

- load: workdirs and tidy CSVs -> one episodes DataFrame (`AnalysisError` on bad input).
- scores: per-frame curves, final scores, human normalization, score matrices, gaps.
- aggregate: rliable metrics with bootstrap CIs, and the CLI
  (`python -m plasticity_rl.analysis.aggregate`, console script `plasticity-rl-aggregate`).
- stats: the bootstrap of means over seeds (or evaluations) and the flag on CIs from < 3 runs.
- paired: per-game benefit of a treated variant over its control on the same seeds (--paired).
- curves: per-game learning curves over seeds, and the runs' intervention events.
- tables: Markdown / LaTeX tables and their CSV / JSON copies. plots: figures (PNG and PDF).
- learning_curve: one run's learning curve.
- diagnosis: the plasticity diagnosis report (plasticity-rl-diagnose: plasticity_rl/diagnose.py, docs/diagnosis.md).
"""
