"""The data layer: offline corpora from Debian (or committed snapshots of them) -> prepared splits."""

from peftstudy.data.prepare import load_split, prepare_corpus, prepare_dataset

__all__ = ["prepare_dataset", "prepare_corpus", "load_split"]
