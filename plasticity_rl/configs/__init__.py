"""The config files (`--config=configs/dqn.py[:arg]`), shipped with the package.

Each file is loaded by path (ml_collections' config_flags, `plasticity_rl.cli.config_path`), not imported as a
module; `configs/` at the repository root is a symlink to this directory, and a --config path that does not exist
relative to the current directory is looked up here, so `--config=configs/dqn.py` works from any directory.
"""
