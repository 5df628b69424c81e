"""genbench: train, sample, evaluate and compare image generative models, honestly."""

__version__ = "0.1.0"
