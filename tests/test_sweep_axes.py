"""Tests of hyperparameter axes and variant labels: label derivation, the grid (product, dedup, a root's names),
the refusal of bad axes, configs/injection.py's labels, and a dry run of an axis sweep."""

import os
import subprocess
import sys

import pytest

from plasticity_rl import sweep
from plasticity_rl import testing
from plasticity_rl.sweep import axes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(REPO, "configs", "dqn.py") + ":smoke"
VARIANTS = sweep.load_variants(os.path.join(REPO, "configs", "variants.py"))
RR, LR = "learner.replay_ratio", "learner.learning_rate"


# ----------------------------------------------------------------------------- labels


@pytest.mark.parametrize("value, text", [
    (0.5, "0.5"), (1.0, "1"), (1e-4, "1e-4"), (6.25e-5, "6.25e-5"), (2.5e-4, "2.5e-4"), (0.0625, "0.0625"),
    (0.01, "0.01"), (1e20, "1e20"), (2000, "2k"), (1_500_000, "1.5M"), (50_000_000, "50M"), (7_500, "7.5k"),
    (1234, "1234"), (999, "999"), (0, "0"), (-2000, "-2000"), (10**9, "1G"), (True, "true"), (False, "false"),
    ((256, 512), "(256_512)"), ((2000,), "(2k)"), ((), "()"), ("random_shift", "random_shift")])
def test_format_value_and_its_inverse(value, text):
  assert axes.format_value(value) == text
  assert axes.same(axes.parse_value(text), value)


@pytest.mark.parametrize("overrides, label", [
    ({}, "baseline"),
    ({"injection.frames": (50_000_000,)}, "inject@50M"),
    ({"injection.frames": (50_000_000, 100_000_000)}, "inject@50M+100M"),  # configs/injection.py:double.
    ({"injection.frames": (2000,), RR: 0.5}, "inject@2k+rr=0.5"),
    ({RR: 0.25, LR: 1e-4}, "lr=1e-4+rr=0.25"),  # Sorted by field path, whatever the order given.
    ({LR: 6.25e-5, "network.width": 2.0, "replay.capacity": 100_000}, "lr=6.25e-5+width=2+replay.capacity=100k"),
    ({"learner.augment": "random_shift"}, "drq"),  # A name of the variants file, not learner.augment=….
    ({"learner.augment": "random_shift", "reset.frames": (2000,), "reset.target": "head"}, "reset@2k+drq"),
    ({"network.layer_norm": True, RR: 1.0}, "layer_norm+rr=1"),
    ({"network.hidden": 128, "injection.frames": (50_000_000, 100_000_000), "injection.hidden": (256, 512)}, "grow"),
    ({"network.hidden": 128, "injection.frames": (1000, 2000), "injection.hidden": (256, 512)}, "grow@1k+2k"),
    ({"injection.frames": (100_000,), "injection.freeze_encoder": True}, "inject@100k-freeze_encoder"),
    ({"injection.hidden": (256, 512)}, "injection.hidden=(256_512)"),
])
def test_label_known_answers_and_get_variant_reads_them_back(overrides, label):
  assert VARIANTS.label(overrides) == label
  assert VARIANTS.label(dict(reversed(list(overrides.items())))) == label  # The order given does not matter.
  assert axes.same_overrides(VARIANTS.get_variant(label), overrides)


def test_a_name_in_another_form_has_one_label():
  for name, canonical in [("inject@2000", "inject@2k"), ("inject@1.5M+3_000_000", "inject@1.5M+3M"),
                          ("grow@50M+100M", "grow"), ("learner.augment=random_shift", "drq"),
                          ("inject@25M+75M+rr=0.50+learner.learning_rate=0.0001", "inject@25M+75M+lr=1e-4+rr=0.5"),
                          ("inject@50M-freeze_encoder", "inject@50M-freeze_encoder")]:
    assert VARIANTS.label(VARIANTS.get_variant(name)) == canonical, name
  assert axes.split_label("inject@25M+75M+rr=0.5") == ["inject@25M+75M", "rr=0.5"]
  with pytest.raises(ValueError, match=r"unknown variant 'nope\+rr=1' \(its part 'nope'\)"):
    VARIANTS.get_variant("nope+rr=1")
  with pytest.raises(ValueError, match="the config has no field 'learner.nope'"):
    VARIANTS.get_variant("rr=1+learner.nope=2")
  with pytest.raises(ValueError, match="sets injection.frames twice"):
    VARIANTS.get_variant("inject@2k+injection.frames=(3k)")


def test_injection_presets_are_labelled_as_the_sweep_labels_them():
  """configs/injection.py's presets are the base config plus exactly their label's overrides."""
  from plasticity_rl import config as config_lib  # pylint: disable=g-import-not-at-top
  injection = testing.configs_module("injection")
  expected = {
      "": ["inject@50M", "inject@50M+100M", "grow", "inject@50M-freeze_encoder", "inject@50M-reset_opt"],
      ",cpu": ["inject@100k", "inject@100k+200k", "grow@100k+200k", "inject@100k-freeze_encoder",
               "inject@100k-reset_opt"]}
  for scale, labels in expected.items():
    assert [injection.get_config(p + scale).variant for p in injection.PRESETS] == labels
    for preset, label in zip(injection.PRESETS, labels):
      config = injection.get_config(preset + scale)
      base = config_lib.apply_scale(config_lib.base_config(), scale[1:] or None)
      for field, value in VARIANTS.get_variant(label).items():
        section, key = field.split(".")
        base[section][key] = value
      base.variant = label
      assert base.to_json() == config.to_json(), preset


# ----------------------------------------------------------------------------- axes and the grid


def test_parse_axis():
  assert axes.parse_axis("learner.replay_ratio=0.25,0.5,1") == (RR, ["0.25", "0.5", "1"])
  assert axes.parse_axis("--config.lr=1e-4, 6.25e-5") == (LR, ["1e-4", "6.25e-5"])
  assert axes.parse_axis("injection.hidden=(256,512),(512,1024)") == ("injection.hidden", ["(256,512)", "(512,1024)"])
  assert axes.parse_axis("replay.capacity=100k,1M") == ("replay.capacity", ["100000", "1000000"])
  for bad in ("learner.replay_ratio", "rr=0.5,,1", "=1"):
    with pytest.raises(sweep.SweepError, match="--axis"):
      axes.parse_axis(bad)


def _grid(named, axes_in, keep=None):
  return sweep.grid({n: VARIANTS.get_variant(n) for n in named}, axes_in, VARIANTS.label, keep=keep)


def test_grid_is_every_named_variant_times_the_product_of_the_axes():
  variants, notes = _grid(["baseline", "inject@2k"], [(RR, [0.25, 0.5, 1.0]), (LR, [1e-4, 6.25e-5])])
  assert list(variants) == [
      "lr=1e-4+rr=0.25", "lr=6.25e-5+rr=0.25", "lr=1e-4+rr=0.5", "lr=6.25e-5+rr=0.5", "lr=1e-4+rr=1",
      "lr=6.25e-5+rr=1", "inject@2k+lr=1e-4+rr=0.25", "inject@2k+lr=6.25e-5+rr=0.25", "inject@2k+lr=1e-4+rr=0.5",
      "inject@2k+lr=6.25e-5+rr=0.5", "inject@2k+lr=1e-4+rr=1", "inject@2k+lr=6.25e-5+rr=1"]
  assert variants["inject@2k+lr=1e-4+rr=0.5"] == {"injection.frames": (2000,), RR: 0.5, LR: 1e-4} and notes == []
  assert list(_grid(["baseline", "drq"], [])[0]) == ["baseline", "drq"]  # No axis: the named variants.
  assert list(_grid(["drq", "reset@2k"], [("network.width", [0.5, 2.0])])[0]) == [
      "drq+width=0.5", "drq+width=2", "reset@2k+width=0.5", "reset@2k+width=2"]  # Augmentation × reset, × width.


def test_grid_runs_equal_experiments_once_under_one_name():
  variants, notes = _grid(["inject@2000", "inject@2k", "learner.augment=random_shift", "drq"], [])
  assert list(variants) == ["inject@2k", "drq"]
  assert notes == ["variant 'inject@2000' is labelled 'inject@2k' (its canonical name)",
                   "variant 'inject@2k' is 'inject@2k', listed already: one experiment, run once",
                   "variant 'learner.augment=random_shift' is labelled 'drq' (its canonical name)",
                   "variant 'drq' is 'drq', listed already: one experiment, run once"]
  variants, _ = _grid(["baseline", "drq"], [(RR, [0.5])])
  assert list(variants) == ["rr=0.5", "drq+rr=0.5"]
  # A root keeps the name its earlier launches gave the same overrides (sweep.json's variant_overrides: lists).
  variants, notes = _grid(["inject@2k", "baseline"], [], keep={"inject@2000": {"injection.frames": [2000]}})
  assert list(variants) == ["inject@2000", "baseline"] and "(this root's name for it)" in notes[0]


def test_grid_refuses_a_field_set_twice():
  with pytest.raises(sweep.SweepError, match=r"variant 'grow@1k' sets network.hidden, which --axis network.hidden"):
    _grid(["baseline", "grow@1k"], [("network.hidden", [64, 128])])
  with pytest.raises(sweep.SweepError, match=r"--axis learner.replay_ratio is given twice"):
    _grid(["baseline"], [(RR, [0.5]), (RR, [1.0])])


def test_type_axes_types_values_as_main_would_and_refuses_bad_ones():
  args = [f"--config={sweep.config_spec(SMOKE)}", "--config.total_frames=3000"]
  typed = sweep.type_axes(args, [(RR, ["0.25", "1", "1.0"]), ("network.hidden", ["32", "64"]),
                                 ("network.layer_norm", ["false", "true"]), (LR, ["1e-4"]),
                                 ("injection.hidden", ["(256,512)"])])
  assert typed == [(RR, [0.25, 1.0]), ("network.hidden", [32, 64]), ("network.layer_norm", [False, True]),
                   (LR, [1e-4]), ("injection.hidden", [(256, 512)])]  # 1 and 1.0 are one value.
  assert isinstance(typed[0][1][1], float) and isinstance(typed[1][1][0], int)
  for axis, message in [(("learner.nope", ["1"]), r"^--axis learner.nope: the config has no field 'learner.nope'$"),
                        (("nope.x", ["1"]), "the config has no field 'nope.x'"),
                        ((RR, ["abc"]), r"^--axis learner.replay_ratio=abc: could not convert string to float"),
                        (("network.hidden", ["0.5"]), r"^--axis network.hidden=0.5: invalid literal for int"),
                        (("network.layer_norm", ["maybe"]), r"^--axis network.layer_norm=maybe: .*Non-boolean"),
                        (("learner", ["1"]), r"^--axis learner: a section, not a field"),
                        (("seed", ["1"]), r"^--axis seed: the sweep sets config.seed itself"),
                        (("total_frames", ["2000"]), "an override sets config.total_frames for every run too")]:
    with pytest.raises(sweep.SweepError, match=message):
      sweep.type_axes(args, [axis])


# ----------------------------------------------------------------------------- the launcher


def _launch(*args):
  return subprocess.run([sys.executable, "-m", "plasticity_rl.launch_sweep", *args], capture_output=True, text=True,
                        timeout=240, cwd=REPO)


def test_dry_run_of_a_replay_ratio_by_learning_rate_sweep(tmp_path):
  root = tmp_path / "sweep"
  result = _launch(f"--config={SMOKE}", f"--root={root}", "--games=Pong", "--variants=baseline,inject@2k",
                   "--axis=learner.replay_ratio=0.25,0.5", "--axis=lr=1e-4,6.25e-5", "--config.total_frames=3000",
                   "--dry_run")
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert lines[0] == f"sweep {root}: 1 game(s) × 8 variant(s) × 1 seed(s)"
  assert lines[2] == "variants: baseline, inject@2k × learner.replay_ratio (0.25, 0.5) × learner.learning_rate " \
                     "(1e-4, 6.25e-5)"
  assert lines[3:11] == [f"  pending  Pong/{v}/seed_0" for v in (
      "lr=1e-4+rr=0.25", "lr=6.25e-5+rr=0.25", "lr=1e-4+rr=0.5", "lr=6.25e-5+rr=0.5", "inject@2k+lr=1e-4+rr=0.25",
      "inject@2k+lr=6.25e-5+rr=0.25", "inject@2k+lr=1e-4+rr=0.5", "inject@2k+lr=6.25e-5+rr=0.5")]
  assert "8 runs: 8 pending" in result.stdout
  assert ("--config.total_frames=3000 --config.learner.replay_ratio=0.25 --config.learner.learning_rate=0.0001 "
          "--config.game=Pong --config.variant=lr=1e-4+rr=0.25 --config.seed=0") in result.stdout
  assert not root.exists()
  result = _launch(f"--config={SMOKE}", f"--root={root}", "--games=Pong", "--axis=learner.nope=1,2", "--dry_run")
  assert result.returncode == 2 and result.stderr.strip() == (
      "error: --axis learner.nope: the config has no field 'learner.nope'") and not root.exists()


def test_sweep_package_imports_no_training_code():
  code = ("import sys, plasticity_rl.sweep, plasticity_rl.launch_sweep\n"
          "from plasticity_rl import cli\n"
          f"v = cli.load_file({os.path.join(REPO, 'configs', 'variants.py')!r}, 'v')\n"
          "assert v.label({'injection.frames': (2000,), 'learner.replay_ratio': 0.5}) == 'inject@2k+rr=0.5'\n"
          "print(sorted({m.split('.')[0] for m in sys.modules} & {'jax', 'flax', 'optax', 'envpool', 'numpy'}))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip() == "[]"


def test_a_root_keeps_the_names_its_manifest_holds(tmp_path):
  """A root launched before labels were canonical (inject@2000) keeps that name for the same overrides."""
  runs = sweep.expand(str(tmp_path), SMOKE, ["Pong"], {"inject@2000": {"injection.frames": (2000,)}}, [0])
  manifest = sweep.Manifest.open(str(tmp_path), sweep.config_spec(SMOKE), [])
  manifest.add_launch(["old"], "local", runs)
  manifest.save()
  again = sweep.Manifest.open(str(tmp_path), sweep.config_spec(SMOKE), [])
  assert again.variants() == {"inject@2000": {"injection.frames": [2000]}}
  assert list(_grid(["inject@2k", "inject@3k"], [], keep=again.variants())[0]) == ["inject@2000", "inject@3k"]


def test_injection_target_as_an_axis_has_distinct_labels_and_directories(tmp_path):
  """The last_k ablation (injection.target "last_k:K") sweeps as any field: one label per target, read back."""
  args = [f"--config={sweep.config_spec(SMOKE)}", "--config.total_frames=3000"]
  typed = sweep.type_axes(args, [axes.parse_axis("injection.target=head,last_k:3")])
  assert typed == [("injection.target", ["head", "last_k:3"])]
  variants, _ = _grid(["inject@2k"], typed)
  assert list(variants) == ["inject@2k+injection.target=head", "inject@2k+injection.target=last_k:3"]
  assert VARIANTS.get_variant("inject@2k+injection.target=last_k:3") == {"injection.frames": (2000,),
                                                                          "injection.target": "last_k:3"}
  result = _launch(f"--config={SMOKE}", f"--root={tmp_path / 'sweep'}", "--games=Pong", "--variants=inject@2k",
                   "--axis=injection.target=head,last_k:3", "--config.total_frames=3000", "--dry_run")
  assert result.returncode == 0, result.stderr
  assert [line for line in result.stdout.splitlines() if "pending  " in line] == [
      "  pending  Pong/inject@2k+injection.target=head/seed_0",
      "  pending  Pong/inject@2k+injection.target=last_k_3/seed_0"]  # The directory spells ':' as '_'.
