"""plasticity_rl: Double DQN on Atari for research on plasticity loss."""

import setuptools

setuptools.setup(
    name="plasticity_rl",
    version="0.1.0",
    description="JAX/Flax Double DQN on Atari for plasticity-loss research: "
    "plasticity injection, metrics, interventions, 57-game aggregation.",
    packages=setuptools.find_packages(include=["plasticity_rl", "plasticity_rl.*"]),
    package_data={"plasticity_rl": ["data/*.csv", "data/*.md"]},
    python_requires=">=3.11",
    license="Apache-2.0",
    install_requires=[
        "jax>=0.7,<0.11",
        "flax>=0.11,<0.13",
        "optax>=0.2.5,<0.3",
        "chex>=0.1.90,<0.2",
        "envpool>=1.2,<2",
        "orbax-checkpoint>=0.11,<0.13",
        "ml-collections>=1.0,<2",
        "absl-py>=2.1,<3",
        "numpy>=1.26,<3",
        "tensorboardX>=2.6,<3",
        "matplotlib>=3.8,<4",
        "psutil>=5.9",
        # Aggregation: rliable's `arch` dependency breaks on pandas 3.
        "rliable>=1.2,<1.3",
        "pandas>=2.1,<3",
        "submitit>=1.5,<2",
        # Evaluation videos (eval.record_video): MP4 through imageio's ffmpeg plugin and its bundled ffmpeg.
        "imageio>=2.30,<3",
        "imageio-ffmpeg>=0.5,<1",
    ],
    extras_require={
        "dev": ["pytest>=8", "hypothesis>=6.100", "tensorboard>=2.16", "wandb>=0.19.10,<1"],
        "wandb": ["wandb>=0.19.10,<1"],  # log.wandb
        "cuda": ["jax[cuda12]>=0.7,<0.11"],
    },
    entry_points={
        "console_scripts": [
            "plasticity-rl=plasticity_rl.main:run",
            "plasticity-rl-aggregate=plasticity_rl.analysis.aggregate:run",
            "plasticity-rl-reproduce=plasticity_rl.reproduce:run",
            "plasticity-rl-sweep=plasticity_rl.launch_sweep:run",
            "plasticity-rl-diagnose=plasticity_rl.diagnose:run",
            "plasticity-rl-checkpoints=plasticity_rl.list_checkpoints:run",
            "plasticity-rl-plot=plasticity_rl.plot_metrics:run",
        ],
    },
)
