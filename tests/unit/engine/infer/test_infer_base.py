from __future__ import annotations

import numpy as np
import pytest

from engine.infer.base import check_crops, label_map, sigmoid, softmax


def test_sigmoid_is_exact_and_never_overflows():
    x = np.array([-1000.0, -3.0, 0.0, 2.5, 1000.0], dtype=np.float32)
    with np.errstate(over="raise"):
        y = sigmoid(x)
    np.testing.assert_allclose(y[1:4], 1 / (1 + np.exp(-x[1:4].astype(np.float64))), rtol=1e-6)
    assert y[0] == 0.0 and y[-1] == 1.0 and y.dtype == np.float32


def test_softmax_sums_to_one_for_large_logits():
    logits = np.array([[1000.0, 999.0, -5.0, 0.0], [0.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    p = softmax(logits, axis=1)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(p[0, :2], [1 / (1 + np.exp(-1)), np.exp(-1) / (1 + np.exp(-1))], rtol=1e-5)
    np.testing.assert_allclose(p[1], 0.25)


def test_label_map_is_the_channel_argmax():
    logits = np.zeros((3, 2, 2, 2), dtype=np.float32)
    logits[2, 0, 0, 0] = 5.0
    logits[1, 1, 1, 1] = 1.0
    labels = label_map(logits)
    assert labels.dtype == np.uint8 and labels.shape == (2, 2, 2)
    assert labels[0, 0, 0] == 2 and labels[1, 1, 1] == 1 and labels[0, 1, 0] == 0
    with pytest.raises(ValueError, match=r"\(C, D, H, W\)"):
        label_map(logits[0])


def test_check_crops_names_the_expected_shape_and_dtype():
    """Both backends refuse bad crops through this one check, with these messages."""
    check_crops(np.zeros((0, 1, 16, 16, 16), np.float32), 16)
    with pytest.raises(ValueError) as wrong_shape:
        check_crops(np.zeros((2, 1, 32, 32, 32), np.float32), 16)
    assert str(wrong_shape.value) == "classify() takes crops (N, 1, 16, 16, 16), got shape (2, 1, 32, 32, 32)"
    with pytest.raises(TypeError) as wrong_dtype:
        check_crops(np.zeros((2, 1, 16, 16, 16)), 16)
    assert str(wrong_dtype.value) == "classify() takes float32 crops, got float64"
