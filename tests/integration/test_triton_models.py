"""The vertebra models served by the local tritonserver (triton_models/cpu) against the in-process path.

The server loads the repository the stack points it at (``triton_models/cpu`` by default,
``VCF_STACK_TRITON_REPOSITORY`` otherwise) with the ONNX files of ``VCF_MODELS__DIR`` or the
bundled ones; the in-process backend here loads the same files. The last test stops Triton
in the middle of a run and brings it back up.
"""

from __future__ import annotations

import json
import math
import threading
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from engine.cli import app
from engine.errors import ConfigurationError
from engine.infer.onnx_backend import OnnxBackend
from engine.infer.triton_backend import TritonBackend
from engine.infer.triton_client import TritonConnection, TritonRequestError
from engine.phantom import PhantomConfig, generate_study, write_study
from engine.screen import Screener
from engine.serving import spec as s
from engine.settings import Settings
from stack import stackctl

pytestmark = pytest.mark.integration

SEEDS = (3, 6)
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def settings(triton) -> Settings:
    settings = Settings()
    settings.triton = triton
    return settings


@pytest.fixture(scope="module")
def studies():
    return [generate_study(seed, PhantomConfig.fast()) for seed in SEEDS]


@pytest.fixture(scope="module")
def local(settings) -> Screener:
    return Screener(settings, backend=OnnxBackend(settings.models, settings.preprocess))


@pytest.fixture(scope="module")
def served(settings):
    backend = TritonBackend(settings.triton, settings.models)
    yield backend
    backend.close()


def outcome(screener: Screener, volume):
    """The StudyOutput, or the exception's text: a study the models cannot screen must fail
    the same way through either backend."""
    try:
        return screener.screen_volume(volume), None
    except Exception as exc:  # noqa: BLE001 - compared, not hidden
        return None, f"{type(exc).__name__}: {exc}"


@pytest.fixture(scope="module")
def local_outcomes(local, studies):
    outcomes = [outcome(local, study.volume) for study in studies]
    if not any(out is not None and out.result.vertebrae for out, _ in outcomes):
        pytest.fail(f"no phantom of seeds {SEEDS} screens in-process with these models: {[e for _, e in outcomes]}")
    return outcomes


@pytest.fixture(scope="module")
def ok_study(studies, local_outcomes):
    """A study the models screen (with vertebrae), and its in-process output."""
    return next((study, out) for study, (out, _) in zip(studies, local_outcomes) if out is not None and out.result.vertebrae)


def assert_close(a, b, where="result"):
    """Equal, except floats within TOLERANCE (ONNX Runtime in two processes, numpy 1 vs 2)."""
    if isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, abs_tol=TOLERANCE), f"{where}: {a} != {b}"
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            assert_close(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        assert len(a) == len(b), f"{where}: {len(a)} != {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def without_timings(output) -> dict:
    data = output.result.model_dump(mode="json")
    data.pop("timings_ms")
    return data


def test_every_model_of_the_repository_is_ready(served):
    for name in (s.PIPELINE_MODEL, "vertebra_seg", "vertebra_cls", "hu_window"):
        assert served.client.is_model_ready(name), name
    assert served.transport == "system shared memory"
    assert served.seg_classes[1] == "vertebral_body" and served.crop_size == 32


def test_results_through_the_pipeline_equal_the_in_process_results(settings, served, studies, local_outcomes):
    screener = Screener(settings, backend=served)
    for study, (expected, expected_error) in zip(studies, local_outcomes):
        got, error = outcome(screener, study.volume)
        assert error == expected_error
        if expected is None:
            continue
        assert got.result.status == expected.result.status, got.result.reason
        assert "infer" in got.result.timings_ms and "segment" not in got.result.timings_ms
        assert got.result.pipeline_version == expected.result.pipeline_version  # weights versions reported by Triton
        assert [v.level for v in got.result.vertebrae] == [v.level for v in expected.result.vertebrae]
        assert [v.genant_grade for v in got.result.vertebrae] == [v.genant_grade for v in expected.result.vertebrae]
        assert_close(without_timings(got), without_timings(expected))
        np.testing.assert_array_equal(got.class_map, expected.class_map)


def test_results_through_segment_and_classify_equal_the_in_process_results(settings, ok_study):
    study, expected = ok_study
    with TritonBackend(settings.triton, settings.models, use_pipeline=False) as backend:
        assert backend.screen_tensor is None
        got = Screener(settings, backend=backend).screen_volume(study.volume)
    assert {"segment", "classify"} <= set(got.result.timings_ms)
    assert_close(without_timings(got), without_timings(expected))


def test_malformed_requests_get_clear_errors_and_the_server_stays_up(triton, served, studies):
    connection = TritonConnection(triton)
    try:
        volume = np.random.default_rng(1).random((32, 32, 32), dtype=np.float32)
        spacing = np.array([2.0, 2.0, 2.0])
        cases = [
            ({"volume": volume.astype(np.int32), "spacing_mm": spacing}, "INT32"),
            ({"volume": volume[0], "spacing_mm": spacing}, "unexpected shape"),
            ({"volume": np.where(volume > 0.5, np.nan, volume).astype(np.float32), "spacing_mm": spacing}, "NaN"),
            ({"volume": volume[:, :, :30].copy(), "spacing_mm": spacing}, "not a multiple of the segmentation grid"),
            ({"volume": volume, "spacing_mm": np.array([2.0, 0.0, 2.0])}, "spacing_mm must be 3 positive"),
        ]
        for inputs, message in cases:
            with pytest.raises(TritonRequestError, match=message) as caught:
                connection.infer(s.PIPELINE_MODEL, inputs, ["class_map"])
            assert "vcf_pipeline" in str(caught.value)
        with pytest.raises(TritonRequestError, match="vertebra_cls"):
            connection.infer("vertebra_cls", {"crops": np.zeros((2, 1, 24, 24, 24), np.float32)}, ["fracture_logit"])
        assert connection.client.is_server_ready()
        assert all(connection.client.is_model_ready(name) for name in (s.PIPELINE_MODEL, "vertebra_seg", "vertebra_cls"))
    finally:
        connection.close()
    reading = served.screen_tensor(volume, spacing)  # and a good request is served as before
    assert reading.class_map.shape == volume.shape


def test_a_server_that_differs_from_the_client_is_refused_naming_both_sides(settings):
    other = settings.models.model_copy(update={"crop_size": 24})
    with pytest.raises(ConfigurationError) as caught:
        TritonBackend(settings.triton, other)
    message = caught.value.message
    assert "vertebra_cls: input 'crops' is served as FP32 [-1, 1, 32, 32, 32]" in message
    assert "this client expects FP32 [-1, 1, 24, 24, 24]" in message
    assert "the server cuts crops of 32 voxels, this client expects 24" in message


def test_a_client_whose_window_differs_from_the_served_model_is_refused(settings):
    window = settings.preprocess.model_copy(update={"hu_window": (-200.0, 1300.0)})
    with pytest.raises(ConfigurationError) as caught:
        TritonBackend(settings.triton, settings.models, preprocess=window)
    assert "this client's preprocess.hu_window is -200,1300" in caught.value.message
    TritonBackend(settings.triton, settings.models, preprocess=settings.preprocess).close()  # the same window is served


def test_screen_command_runs_through_triton(triton, ok_study, tmp_path):
    folder = write_study(ok_study[0], tmp_path / "studies")
    out = tmp_path / "results.jsonl"
    result = CliRunner().invoke(app, ["screen", str(folder), "--out", str(out), "--backend", "triton", "--triton-url", triton.url])
    assert result.exit_code == 0, result.output
    (line,) = out.read_text().splitlines()
    record = json.loads(line)
    assert record["status"] == "ok", record["reason"]
    assert record["pipeline_version"] == ok_study[1].result.pipeline_version and "infer" in record["timings_ms"]
    assert [v["level"] for v in record["vertebrae"]] == [v.level for v in ok_study[1].result.vertebrae]


def test_stopping_triton_mid_run_fails_the_study_with_a_transient_reason_then_recovers(settings, ok_study, tmp_path):
    folder = write_study(ok_study[0], tmp_path / "studies")
    backend = TritonBackend(settings.triton, settings.models)
    screener = Screener(settings, backend=backend)
    t = settings.triton
    bound_s = (t.max_retries + 1) * t.timeout_s + t.retry_backoff_s * (2 ** (t.max_retries + 1)) + 30.0  # + load/preprocess
    stopper = threading.Thread(target=stackctl.down, args=(["triton"],))
    runs = []
    try:
        stopper.start()
        for _ in range(8):  # bounded: the stop takes a few seconds at most
            start = time.monotonic()
            output = screener.screen(folder)
            runs.append((output.result, time.monotonic() - start))
            if output.result.status == "error":
                break
        stopper.join(timeout=120)
    finally:
        stopper.join(timeout=120)
        stackctl.up(["triton"])
        backend.close()
    failed = [(result, seconds) for result, seconds in runs if result.status == "error"]
    assert failed, f"no study failed while Triton was stopped: {[r.status for r, _ in runs]}"
    result, seconds = failed[0]
    assert result.reason.startswith("transient:") and "unavailable" in result.reason, result.reason
    assert f"after {t.max_retries + 1} attempts" in result.reason
    assert seconds < bound_s
    with TritonBackend(settings.triton, settings.models) as again:  # back for whatever runs next
        assert Screener(settings, backend=again).screen(folder).result.status == "ok"
