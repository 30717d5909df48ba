"""plasticity_rl: Double DQN on Atari for research on plasticity loss and its remedies."""

__version__ = "0.1.0"
