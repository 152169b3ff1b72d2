from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from engine.errors import ConfigurationError
from engine.models.contract import GRADE_CLASSES, SEG_CLASSES
from engine.models.export import (
    OPSET,
    ExportError,
    export_classifier,
    export_segmenter,
    read_metadata,
)
from engine.models.networks import ClassifierConfig, SegmenterConfig, build_classifier, build_segmenter

TINY_SEG = SegmenterConfig(channels=(4, 8, 16), num_res_units=1)


def _dims(value: onnx.ValueInfoProto) -> list[str | int]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


@pytest.fixture(scope="module")
def seg_export(tmp_path_factory):
    torch.manual_seed(0)
    net = build_segmenter(TINY_SEG).eval()
    path = tmp_path_factory.mktemp("seg") / "seg.onnx"
    report = export_segmenter(net, TINY_SEG, path, version="v-test", check_shapes=((1, 1, 8, 12, 4), (2, 1, 4, 8, 16)))
    return net, path, report


def test_segmenter_export_is_valid_named_and_dynamic(seg_export):
    _, path, report = seg_export
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert model.opset_import[0].version == OPSET
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "volume" and out.name == "seg_logits"
    assert _dims(inp) == ["batch", 1, "depth", "height", "width"]
    assert _dims(out) == ["batch", len(SEG_CLASSES), "depth", "height", "width"]
    assert report.size_bytes == path.stat().st_size and report.max_abs_diff <= 1e-4
    assert report.checked_shapes == ((1, 1, 8, 12, 4), (2, 1, 4, 8, 16))


def test_segmenter_runs_in_ort_like_torch_on_shapes_never_traced(seg_export):
    net, path, _ = seg_export
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(1, 1, 12, 4, 20), (3, 1, 16, 16, 8)]:
        x = torch.rand(*shape)
        (got,) = session.run(None, {"volume": x.numpy()})
        with torch.no_grad():
            want = net(x).numpy()
        assert got.shape == want.shape == (shape[0], 5, *shape[2:])
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_segmenter_metadata_describes_the_network(seg_export):
    _, path, _ = seg_export
    meta = read_metadata(path)
    assert (meta.model, meta.architecture, meta.depth, meta.widths) == ("vertebra_seg", "monai.UNet", 3, (4, 8, 16))
    assert (meta.version, meta.input_spacing_mm, meta.hu_window) == ("v-test", (2.0, 2.0, 2.0), (-200.0, 1200.0))
    assert meta.class_names == SEG_CLASSES and meta.grid_multiple == 4 and meta.outputs == "logits"


@pytest.mark.parametrize("depth", [18, 34, 50])
def test_classifier_of_every_depth_exports_with_a_dynamic_batch(tmp_path, depth):
    config = ClassifierConfig(depth=depth, widths=(4, 4, 8, 8), crop_size=16)
    net = build_classifier(config).eval()
    path = tmp_path / f"cls{depth}.onnx"
    report = export_classifier(net, config, path, version="v-test", spacing_mm=(2.0, 2.0, 2.0), check_batches=(1, 3))
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == ["crops"]
    assert [o.name for o in model.graph.output] == ["fracture_logit", "grade_logits"]
    assert _dims(model.graph.input[0]) == ["batch", 1, 16, 16, 16]
    assert _dims(model.graph.output[1]) == ["batch", 4]
    assert report.max_abs_diff <= 1e-4 and report.checked_shapes == ((1, 1, 16, 16, 16), (3, 1, 16, 16, 16))
    meta = read_metadata(path)
    assert (meta.depth, meta.crop_size, meta.class_names) == (depth, 16, GRADE_CLASSES)
    assert meta.architecture == ("monai.ResNet-bottleneck" if depth == 50 else "monai.ResNet-basic")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    fracture, grade = session.run(None, {"crops": np.random.rand(5, 1, 16, 16, 16).astype(np.float32)})
    assert fracture.shape == (5, 1) and grade.shape == (5, 4)


class _TracedBranch(nn.Module):
    """Python control flow on the input shape: tracing keeps only the branch of the example."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(1, 2, 1)
        nn.init.constant_(self.conv.bias, 1.0)

    def forward(self, x):
        y = self.conv(x)
        return y if x.shape[2] == 4 else y * 0.0


def test_an_export_that_disagrees_with_torch_fails_and_leaves_no_file(tmp_path):
    config = SegmenterConfig(channels=(2, 2), class_names=("background", "vertebral_body"))
    path = tmp_path / "bad.onnx"
    with pytest.raises(ExportError, match=r"differs from torch by .* for input \(1, 1, 6, 4, 4\)"):
        export_segmenter(_TracedBranch(), config, path, version="x", check_shapes=((1, 1, 6, 4, 4),))
    assert list(tmp_path.iterdir()) == []


def test_check_shapes_off_the_grid_are_refused(tmp_path):
    with pytest.raises(ValueError, match="multiples of 4"):
        export_segmenter(build_segmenter(TINY_SEG), TINY_SEG, tmp_path / "s.onnx", version="x", check_shapes=((1, 1, 6, 8, 8),))


def test_reading_metadata_of_a_foreign_model_names_what_is_missing(tmp_path):
    path = tmp_path / "foreign.onnx"
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "foreign",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ConfigurationError, match="foreign.onnx lacks the metadata vcf.model"):
        read_metadata(path)
