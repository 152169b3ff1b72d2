"""Triton Python-backend model: runs ``model.onnx`` beside it with ONNX Runtime on CPU."""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        threads = int(config.get("parameters", {}).get("intra_op_threads", {}).get("string_value", "1"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        model_file = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        if not model_file.exists():
            # The model itself is broken: fail loading, Triton reports it as unavailable.
            raise pb_utils.TritonModelException(f"missing ONNX file {model_file}")
        self.session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        responses = []
        for request in requests:
            hu = pb_utils.get_input_tensor_by_name(request, "HU").as_numpy()
            if not np.all(np.isfinite(hu)):
                # One bad request: an error for that request, the model stays up.
                error = pb_utils.TritonError("HU contains NaN or infinite values")
                responses.append(pb_utils.InferenceResponse(error=error))
                continue
            (norm,) = self.session.run(["norm"], {"hu": hu})
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("NORM", norm)]))
        return responses
