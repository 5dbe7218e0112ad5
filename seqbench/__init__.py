"""seqbench: benchmark the training objectives of sequential recommenders."""

__version__ = "0.1.0"
