"""The client's start-up comparison with what Triton serves, and its shared-memory regions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.models.contract import CLS_MODEL, SEG_MODEL
from engine.serving import spec as s
from engine.serving.served import ServedModel, compare, weights_version
from engine.serving.shm import SystemShmRegion, aligned, is_local_url, layout


def as_served(spec: s.ModelSpec, **params: str) -> ServedModel:
    """What Triton's get_model_metadata / get_model_config (as JSON) say about a model built from ``spec``."""

    def tensors(items):
        return [{"name": t.name, "datatype": t.dtype, "shape": [str(d) for d in spec.full_shape(t)]} for t in items]

    metadata = {"name": spec.name, "versions": ["1"], "inputs": tensors(spec.inputs), "outputs": tensors(spec.outputs)}
    config = {"name": spec.name, "parameters": {k: {"string_value": v} for k, v in params.items()}}
    if spec.max_batch_size:
        config["max_batch_size"] = spec.max_batch_size  # JSON omits a zero
    return ServedModel(spec.name, metadata, config)


def test_a_server_built_from_the_spec_passes():
    for name, spec in s.expected_specs(32).items():
        assert compare(as_served(spec), spec) == [], name


def test_a_different_crop_size_is_reported_with_both_sides():
    served = as_served(s.classifier_spec(24))
    problems = compare(served, s.expected_specs(32)[CLS_MODEL])
    assert problems == [
        "vertebra_cls: input 'crops' is served as FP32 [-1, 1, 24, 24, 24], this client expects FP32 [-1, 1, 32, 32, 32]"
    ]


def test_batching_names_and_dtypes_are_compared():
    seg = s.segmenter_spec()
    unbatched = as_served(s.ModelSpec(seg.name, 0, seg.inputs, seg.outputs))
    assert any("max_batch_size is 0, this client expects 1" in p for p in compare(unbatched, seg))
    renamed = as_served(s.ModelSpec(seg.name, 1, (s.TensorSpec("image", "FP32", (1, -1, -1, -1)),), seg.outputs))
    assert "the server's inputs are ['image'], this client expects ['volume']" in compare(renamed, seg)[0]
    half = as_served(s.ModelSpec(seg.name, 1, (s.TensorSpec("volume", "FP16", (1, -1, -1, -1)),), seg.outputs))
    assert "served as FP16" in compare(half, seg)[0] and "expects FP32" in compare(half, seg)[0]


def test_weights_version_comes_from_the_generated_parameters():
    served = as_served(s.segmenter_spec(), weights_version="v3", weights_sha256="ab" * 32)
    assert weights_version(served) == "v3+" + "ab" * 6
    assert weights_version(as_served(s.segmenter_spec())) is None
    assert as_served(s.pipeline_spec()).max_batch_size == 0 and SEG_MODEL != CLS_MODEL


def test_layout_aligns_every_tensor():
    assert aligned(1) == 64 and aligned(64) == 64 and aligned(65) == 128
    assert layout([10, 100, 0, 3]) == ([0, 64, 192, 192], 256)


@pytest.mark.parametrize(
    ("url", "local"),
    [("127.0.0.1:8001", True), ("localhost:8001", True), ("[::1]:8001", True), ("triton.invalid:8001", False)],
)
def test_local_urls(url, local):
    assert is_local_url(url) is local


class RecordingClient:
    """Records what a region asks of the server."""

    def __init__(self):
        self.calls: list[tuple] = []

    def register_system_shared_memory(self, name, key, byte_size, client_timeout=None):
        self.calls.append(("register", name, key, byte_size))

    def unregister_system_shared_memory(self, name="", client_timeout=None):
        self.calls.append(("unregister", name))


def test_a_region_grows_to_the_largest_tensor_and_registers_again_after_a_restart():
    client = RecordingClient()
    region = SystemShmRegion(client, "in")
    try:
        region.reserve(3 << 20)
        first = region.size
        assert first >= 3 << 20 and client.calls[-1] == ("register", region.name, region.key, first)
        assert Path(f"/dev/shm{region.key}").exists()
        region.reserve(1 << 20)  # smaller: reused, nothing asked of the server
        assert region.size == first and len(client.calls) == 2
        volume = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
        spacing = np.array([2.0, 2.0, 2.5])
        offsets, _ = layout([volume.nbytes, spacing.nbytes])
        region.write([volume, spacing], offsets)
        np.testing.assert_array_equal(region.read(np.float32, (2, 3, 4), offsets[0]), volume)
        np.testing.assert_array_equal(region.read(np.float64, (3,), offsets[1]), spacing)
        region.mark_stale()  # e.g. the server restarted
        region.reserve(1 << 20)
        assert client.calls[-2:] == [("unregister", region.name), ("register", region.name, region.key, first)]
        region.reserve(8 << 20)  # larger: a new region, registered under the same name
        assert region.size >= 8 << 20 and client.calls[-1][3] == region.size
    finally:
        region.close()
    assert client.calls[-1] == ("unregister", region.name)
    assert not Path(f"/dev/shm{region.key}").exists()


@pytest.mark.gpu
def test_a_cuda_region_round_trips_tensors():
    from engine.serving.shm import CudaShmRegion, client_has_gpu

    if not client_has_gpu():
        pytest.skip("no NVIDIA GPU on this machine: CUDA shared memory not exercised (system shared memory is used)")
    client = RecordingClient()
    client.register_cuda_shared_memory = lambda name, raw, device, size, client_timeout=None: client.calls.append(
        ("register_cuda", name, device, size)
    )
    client.unregister_cuda_shared_memory = lambda name="", client_timeout=None: client.calls.append(("unregister_cuda", name))
    region = CudaShmRegion(client, "in")
    try:
        region.reserve(1 << 20)
        volume = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
        offsets, _ = layout([16, volume.nbytes])
        region.write([np.zeros(4, np.float32), volume], offsets)
        np.testing.assert_array_equal(region.read(np.float32, (3, 4, 5), offsets[1]), volume)
        assert client.calls[-1][0] == "register_cuda"
    finally:
        region.close()
