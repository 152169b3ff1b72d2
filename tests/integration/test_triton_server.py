"""The local tritonserver loads the repository in triton_models/cpu and serves it over gRPC."""

from __future__ import annotations

import numpy as np
import pytest
import requests

from engine.infer.triton_client import TritonConnection, TritonRequestError

pytestmark = pytest.mark.integration

LOW, HIGH = -200.0, 1200.0  # the window built into triton_models/cpu/hu_window


@pytest.fixture()
def connection(triton):
    conn = TritonConnection(triton)
    conn.wait_ready(timeout_s=60)
    yield conn
    conn.close()


def test_repository_model_is_loaded(connection):
    assert connection.client.is_model_ready("hu_window")
    metadata = connection.client.get_model_metadata("hu_window", as_json=True)
    assert metadata["inputs"][0]["name"] == "HU"
    assert metadata["outputs"][0]["name"] == "NORM"


def test_inference_matches_numpy(connection):
    rng = np.random.default_rng(7)
    hu = rng.uniform(-1100, 2500, size=(3, 1000)).astype(np.float32)
    out = connection.infer("hu_window", {"HU": hu}, ["NORM"])["NORM"]
    expected = (np.clip(hu, LOW, HIGH) - LOW) / (HIGH - LOW)
    assert out.shape == hu.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_bad_request_gets_clear_error_and_server_stays_up(connection, triton):
    hu = np.array([[0.0, np.nan, 10.0]], dtype=np.float32)
    with pytest.raises(TritonRequestError, match="NaN"):
        connection.infer("hu_window", {"HU": hu}, ["NORM"])
    with pytest.raises(TritonRequestError, match="hu_window"):
        connection.infer("hu_window", {"HU": np.ones((1, 3), np.int32)}, ["NORM"])  # wrong dtype
    assert connection.client.is_server_ready()
    ok = connection.infer("hu_window", {"HU": np.zeros((1, 4), np.float32)}, ["NORM"])["NORM"]
    np.testing.assert_allclose(ok, 200.0 / 1400.0, atol=1e-6)
    # Triton's own metrics endpoint counts the successes of this model.
    text = requests.get(triton.metrics_url, timeout=5).text
    assert 'nv_inference_request_success{model="hu_window"' in text
