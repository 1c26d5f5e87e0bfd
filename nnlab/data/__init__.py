"""Datasets for nnlab: synthetic generators, CSV/NPZ loading, splits, standardisation, fingerprints.

Pure NumPy/pandas; nothing here touches the engine or the store.

>>> from nnlab.data import load_dataset, split, standardize
>>> train, val = standardize(*split(load_dataset("moons", n_samples=100), val_fraction=0.2))
>>> train.n_samples, val.n_samples
(80, 20)
"""

from __future__ import annotations

from nnlab.data.dataset import DataError, Dataset, fingerprint, make_dataset, validate
from nnlab.data.loaders import load_csv, load_dataset, load_npz
from nnlab.data.split import Standardizer, split, standardize
from nnlab.data.synthetic import SYNTHETIC, blobs, circles, moons, sine, spirals, xor

__all__ = [
    "SYNTHETIC",
    "DataError",
    "Dataset",
    "Standardizer",
    "blobs",
    "circles",
    "fingerprint",
    "load_csv",
    "load_dataset",
    "load_npz",
    "make_dataset",
    "moons",
    "sine",
    "spirals",
    "split",
    "standardize",
    "validate",
    "xor",
]
