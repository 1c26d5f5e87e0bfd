"""Data fingerprints: sha256 over the arrays, stable under copies, sensitive to every element."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nnlab.data import DataError, fingerprint, xor

arrays = hnp.arrays(
    dtype=st.sampled_from([np.float64, np.float32, np.int64]),
    shape=hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=6),
    elements={"allow_nan": False, "allow_infinity": False, "allow_subnormal": False},
)


def test_fingerprint_format():
    data = xor()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", fingerprint(data.X, data.y))


@settings(max_examples=50, deadline=None)
@given(X=arrays, y=arrays)
def test_fingerprint_is_stable_under_copies_and_layout(X, y):
    expected = fingerprint(X, y)
    assert fingerprint(X.copy(), y.copy()) == expected
    assert fingerprint(np.asfortranarray(X), np.asfortranarray(y)) == expected


@settings(max_examples=50, deadline=None)
@given(X=arrays, y=arrays, data=st.data())
def test_fingerprint_changes_with_any_element(X, y, data):
    target = data.draw(st.sampled_from(["X", "y"]))
    changed = (X if target == "X" else y).copy()
    flat = changed.reshape(-1)
    i = data.draw(st.integers(0, flat.size - 1))
    flat[i] = 1 if flat[i] == 0 else 0
    new = (changed, y) if target == "X" else (X, changed)
    assert fingerprint(*new) != fingerprint(X, y)


def test_fingerprint_sees_dtype_shape_and_order_of_arguments():
    X = np.arange(6, dtype=np.int64).reshape(2, 3)
    y = np.array([0, 1])
    base = fingerprint(X, y)
    assert fingerprint(X.astype(np.int32), y) != base
    assert fingerprint(X.reshape(3, 2), y) != base
    assert fingerprint(X.T, y) != base
    assert fingerprint(y, X) != base
    assert fingerprint(X.tolist(), y.tolist()) == base


def test_fingerprint_rejects_object_arrays():
    with pytest.raises(DataError, match="dtype object"):
        fingerprint(np.array([object()]), np.zeros(1))
