"""Build ``cpu/hu_window/1/model.onnx``: HU windowing, (clip(hu, lo, hi) - lo) / (hi - lo).

The stack's smoke model: it proves that the local tritonserver loads a Python-backend model
from this repository and runs ONNX Runtime inside it. Its window matches the default of
``preprocess.hu_window``. Run with the project environment: ``python triton_models/make_hu_window.py``.
"""

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

LOW, HIGH = -200.0, 1200.0
OUT = Path(__file__).resolve().parent / "cpu" / "hu_window" / "1" / "model.onnx"


def build() -> onnx.ModelProto:
    inputs = [helper.make_tensor_value_info("hu", TensorProto.FLOAT, ["batch", "n"])]
    outputs = [helper.make_tensor_value_info("norm", TensorProto.FLOAT, ["batch", "n"])]
    constants = [
        numpy_helper.from_array(np.array(LOW, dtype=np.float32), "low"),
        numpy_helper.from_array(np.array(HIGH, dtype=np.float32), "high"),
        numpy_helper.from_array(np.array(HIGH - LOW, dtype=np.float32), "width"),
    ]
    nodes = [
        helper.make_node("Clip", ["hu", "low", "high"], ["clipped"]),
        helper.make_node("Sub", ["clipped", "low"], ["shifted"]),
        helper.make_node("Div", ["shifted", "width"], ["norm"]),
    ]
    graph = helper.make_graph(nodes, "hu_window", inputs, outputs, initializer=constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="vcfscreen")
    model.ir_version = 8  # readable by every onnxruntime >= 1.15
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    OUT.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(build(), OUT)
    print(f"wrote {OUT}")
