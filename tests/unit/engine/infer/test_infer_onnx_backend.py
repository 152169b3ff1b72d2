from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from pydantic import ValidationError

from engine.errors import ConfigurationError
from engine.infer.base import InferenceBackend, softmax
from engine.infer.onnx_backend import OnnxBackend, execution_providers
from engine.models.contract import CLS_MODEL, SEG_CLASSES, SEG_MODEL, file_sha256
from engine.settings import ModelSettings, PreprocessSettings


def _copy_models(source: Path, target: Path) -> Path:
    for name in ("vertebra_seg.onnx", "vertebra_cls.onnx"):
        shutil.copy(source / name, target / name)
    return target


def _edit(path: Path, edit) -> None:
    model = onnx.load(str(path))
    edit(model)
    onnx.save(model, str(path))


def _rename_input(model: onnx.ModelProto, old: str, new: str) -> None:
    for value in model.graph.input:
        if value.name == old:
            value.name = new
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new


def _set_prop(model: onnx.ModelProto, key: str, value: str) -> None:
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = value


@pytest.fixture(scope="module")
def backend(tiny_models) -> OnnxBackend:
    return OnnxBackend(tiny_models.settings(), PreprocessSettings())


def test_backend_meets_the_protocol_and_reports_versions(backend, tiny_models):
    assert isinstance(backend, InferenceBackend)
    seg_sha = file_sha256(tiny_models.dir / "vertebra_seg.onnx")
    assert backend.versions == {
        SEG_MODEL: f"test-1+{seg_sha[:12]}",
        CLS_MODEL: f"test-1+{file_sha256(tiny_models.dir / 'vertebra_cls.onnx')[:12]}",
    }
    assert backend.seg_classes == SEG_CLASSES
    assert backend.crop_size == 16
    assert backend.providers[-1] == "CPUExecutionProvider"


def test_sessions_use_the_configured_threads_and_arena(backend, tiny_models):
    for model in backend.models.values():
        options = model.session.get_session_options()
        assert options.intra_op_num_threads == 1 and options.enable_cpu_mem_arena is False
    with_arena = OnnxBackend(tiny_models.settings(intra_op_threads=2, cpu_memory_arena=True))
    options = with_arena.models[SEG_MODEL].session.get_session_options()
    assert options.intra_op_num_threads == 2 and options.enable_cpu_mem_arena is True


def test_segment_returns_torch_logits_for_any_grid_shape(backend, tiny_models):
    rng = np.random.default_rng(1)
    for shape in [(8, 12, 16), (12, 8, 4)]:
        volume = rng.random(shape, dtype=np.float32)
        logits = backend.segment(volume)
        with torch.no_grad():
            expected = tiny_models.seg_net(torch.from_numpy(volume)[None, None])[0].numpy()
        assert logits.shape == (len(SEG_CLASSES), *shape) and logits.dtype == np.float32
        np.testing.assert_allclose(logits, expected, atol=1e-4)


def test_segment_refuses_bad_volumes(backend):
    with pytest.raises(ValueError, match=r"\(D, H, W\)"):
        backend.segment(np.zeros((1, 8, 8, 8), np.float32))
    with pytest.raises(TypeError, match="float64"):
        backend.segment(np.zeros((8, 8, 8)))
    with pytest.raises(ConfigurationError, match=r"\(8, 10, 8\).*grid 4"):
        backend.segment(np.zeros((8, 10, 8), np.float32))


def test_classify_returns_probabilities_matching_torch(backend, tiny_models):
    crops = np.random.default_rng(2).random((5, 1, 16, 16, 16), dtype=np.float32)
    fracture, grades = backend.classify(crops)
    with torch.no_grad():
        fracture_logit, grade_logits = tiny_models.cls_net(torch.from_numpy(crops))
    assert fracture.shape == (5,) and grades.shape == (5, 4)
    np.testing.assert_allclose(fracture, torch.sigmoid(fracture_logit[:, 0]).numpy(), atol=1e-5)
    np.testing.assert_allclose(grades, softmax(grade_logits.numpy(), axis=1), atol=1e-5)
    np.testing.assert_allclose(grades.sum(axis=1), 1.0, atol=1e-5)


def test_crop_chunks_give_the_same_result_as_one_batch(tiny_models):
    crops = np.random.default_rng(3).random((5, 1, 16, 16, 16), dtype=np.float32)
    chunked = OnnxBackend(tiny_models.settings(crop_batch_size=2))
    whole = OnnxBackend(tiny_models.settings(crop_batch_size=64))
    f_chunked, g_chunked = chunked.classify(crops)
    f_whole, g_whole = whole.classify(crops)
    assert chunked.runs[CLS_MODEL] == 3 and whole.runs[CLS_MODEL] == 1
    np.testing.assert_allclose(f_chunked, f_whole, atol=1e-6)
    np.testing.assert_allclose(g_chunked, g_whole, atol=1e-6)


def test_classify_handles_no_crops_and_refuses_wrong_sizes(backend):
    fracture, grades = backend.classify(np.zeros((0, 1, 16, 16, 16), np.float32))
    assert fracture.shape == (0,) and grades.shape == (0, 4)
    with pytest.raises(ValueError, match=r"\(N, 1, 16, 16, 16\).*\(2, 1, 32, 32, 32\)"):
        backend.classify(np.zeros((2, 1, 32, 32, 32), np.float32))


def test_missing_file_says_which_and_how_to_get_it(tmp_path):
    with pytest.raises(ConfigurationError) as caught:
        OnnxBackend(ModelSettings(dir=tmp_path))
    message = str(caught.value)
    assert "vertebra_seg.onnx" in message and str(tmp_path) in message
    assert "vcfscreen train" in message and "VCF_MODELS__DIR" in message


def test_wrong_input_name_names_both_sides(tiny_models, tmp_path):
    folder = _copy_models(tiny_models.dir, tmp_path)
    _edit(folder / "vertebra_seg.onnx", lambda m: _rename_input(m, "volume", "image"))
    with pytest.raises(ConfigurationError, match=r"\['image'\].*\['volume'\]"):
        OnnxBackend(tiny_models.settings(dir=folder))


def test_swapped_files_are_refused(tiny_models):
    settings = tiny_models.settings(segmentation_file="vertebra_cls.onnx")
    with pytest.raises(ConfigurationError, match="'vertebra_cls'.*segmentation_file"):
        OnnxBackend(settings)


def test_class_count_must_match_the_output_channels(tiny_models, tmp_path):
    folder = _copy_models(tiny_models.dir, tmp_path)
    _edit(
        folder / "vertebra_seg.onnx",
        lambda m: _set_prop(m, "vcf.class_names", "background,vertebral_body,sacrum"),
    )
    with pytest.raises(ConfigurationError, match="axis 1 of output 'seg_logits' is 5, vcfscreen expects 3"):
        OnnxBackend(tiny_models.settings(dir=folder))


def test_missing_metadata_is_refused(tiny_models, tmp_path):
    folder = _copy_models(tiny_models.dir, tmp_path)
    _edit(folder / "vertebra_cls.onnx", lambda m: m.ClearField("metadata_props"))
    with pytest.raises(ConfigurationError, match="lacks the metadata vcf.model, vcf.architecture, .*vcf.format: it was not exported"):
        OnnxBackend(tiny_models.settings(dir=folder))


def test_unreadable_file_is_a_configuration_error(tiny_models, tmp_path):
    folder = _copy_models(tiny_models.dir, tmp_path)
    (folder / "vertebra_cls.onnx").write_bytes(b"not a model")
    with pytest.raises(ConfigurationError, match="cannot load the vertebra_cls model"):
        OnnxBackend(tiny_models.settings(dir=folder))


def test_crop_size_setting_must_match_the_classifier(tiny_models):
    with pytest.raises(ConfigurationError, match="crops of 16 voxels but models.crop_size is 32"):
        OnnxBackend(tiny_models.settings(crop_size=32))


@pytest.mark.parametrize(
    "preprocess, pattern",
    [
        (PreprocessSettings(spacing_mm=(1.5, 1.0, 1.0)), r"spacing_mm is \(1.5, 1.0, 1.0\).*\(2.0, 2.0, 2.0\)"),
        (PreprocessSettings(hu_window=(-1000.0, 1000.0)), r"hu_window is \(-1000.0, 1000.0\).*\(-200.0, 1200.0\)"),
        (PreprocessSettings(grid_multiple=6), "grid_multiple 6 is not a multiple of the grid 4"),
    ],
)
def test_preprocessing_must_match_the_training_grid(tiny_models, preprocess, pattern):
    with pytest.raises(ConfigurationError, match=pattern):
        OnnxBackend(tiny_models.settings(), preprocess)


def test_models_must_share_spacing(tiny_models, tmp_path):
    folder = _copy_models(tiny_models.dir, tmp_path)
    _edit(folder / "vertebra_cls.onnx", lambda m: _set_prop(m, "vcf.input_spacing_mm", "1.0,1.0,1.0"))
    with pytest.raises(ConfigurationError, match="input_spacing_mm differs"):
        OnnxBackend(tiny_models.settings(dir=folder))


def test_gpu_providers_come_first_only_when_offered_and_wanted():
    offered = ["CUDAExecutionProvider", "TensorrtExecutionProvider", "CPUExecutionProvider"]
    assert execution_providers(True, offered) == offered[1::-1] + ["CPUExecutionProvider"]
    assert execution_providers(False, offered) == ["CPUExecutionProvider"]
    assert execution_providers(True, ["AzureExecutionProvider", "CPUExecutionProvider"]) == ["CPUExecutionProvider"]


def test_model_settings_refuse_empty_crop_batches(monkeypatch):
    monkeypatch.setenv("VCF_MODELS__CROP_BATCH_SIZE", "0")
    from engine.settings import Settings

    with pytest.raises(ValidationError, match="crop_batch_size"):
        Settings()
