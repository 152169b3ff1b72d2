from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from engine.models.card import describe_model_file, model_card_markdown, write_model_card

INFO = {
    "version": "2025.06-phantom",
    "models": [
        {"name": "vertebra_seg", "file": "vertebra_seg.onnx", "architecture": "monai.UNet",
         "parameters": 1204662, "size_bytes": 4_863_987, "sha256": "ab" * 32,
         "config": {"channels": (8, 16, 32, 64, 128)}},
    ],
    "training": {
        "data": {"phantoms": 120, "seed": 7, "split": "100 train / 20 validation"},
        "recipe": {"optimiser": "AdamW", "epochs": 40, "learning_rate": 0.001, "duration_s": 2712.5},
    },
    "metrics": {
        "segmentation": {"dice_vertebral_body": 0.9134, "level_identification": 0.962},
        "fracture grade>=2": {"sensitivity": 0.88, "ppv": 0.81},
    },
    "performance": {"seg_latency_s_400x176x176": 3.1},
    "limits": ["No cervical spine in the training phantoms."],
}


def test_card_has_every_section_with_the_given_values(tmp_path):
    path = write_model_card(INFO, tmp_path / "MODEL_CARD.md")
    text = path.read_text()
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections == [
        "## Models", "## Intended use", "## Training data", "## Training recipe",
        "## Metrics", "## Measured performance", "## Limitations",
    ]
    assert "2025.06-phantom" in text and "| vertebra_seg | `vertebra_seg.onnx` | monai.UNet | 1204662 | 4.86 MB |" in text
    assert "Synthetic phantoms only" in text and "- **phantoms**: 120" in text
    assert "- **learning_rate**: 0.001" in text and "| dice_vertebral_body | 0.9134 |" in text
    assert "### fracture grade>=2" in text and "- **channels**: 8, 16, 32, 64, 128" in text
    assert "- No cervical spine in the training phantoms." in text and "synthetic phantoms only" in text


def test_a_recipe_per_model_is_a_nested_list_not_a_dict_repr():
    info = {**INFO, "training": {"data": {}, "recipe": {"segmenter": {"steps": 2400, "lr": 0.001},
                                                        "classifier": {"steps": 6000}}}}
    text = model_card_markdown(info)
    assert "- **segmenter**:\n  - **steps**: 2400\n  - **lr**: 0.001\n- **classifier**:\n  - **steps**: 6000" in text
    assert "{" not in text.split("## Training recipe")[1].split("## Metrics")[0]


def test_card_without_performance_omits_that_section():
    text = model_card_markdown({k: v for k, v in INFO.items() if k != "performance"})
    assert "## Measured performance" not in text and "## Limitations" in text


def test_missing_required_keys_are_named():
    with pytest.raises(ValueError, match=r"lacks \['metrics'\]"):
        model_card_markdown({k: v for k, v in INFO.items() if k != "metrics"})


def test_describe_model_file_reads_size_hash_and_metadata(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Identity", ["crops"], ["fracture_logit"])], "g",
        [helper.make_tensor_value_info("crops", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("fracture_logit", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph)
    helper.set_model_props(model, {"vcf.model": "vertebra_cls", "vcf.architecture": "monai.ResNet-basic", "vcf.depth": "18"})
    path = tmp_path / "vertebra_cls.onnx"
    onnx.save(model, str(path))
    described = describe_model_file(path)
    assert described["name"] == "vertebra_cls" and described["file"] == "vertebra_cls.onnx"
    assert described["size_bytes"] == path.stat().st_size and len(described["sha256"]) == 64
    assert described["config"]["depth"] == "18"
    assert "| vertebra_cls | `vertebra_cls.onnx` | monai.ResNet-basic |" in model_card_markdown({**INFO, "models": [described]})
