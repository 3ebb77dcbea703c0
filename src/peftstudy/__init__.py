"""peftstudy: a reproducible pipeline for comparing fine-tuning methods of language models."""

__version__ = "0.1.0"
