"""Start training from weights exported by this project (continue training, or fine-tune
the shipped models on local data) instead of from random initialisation.

The ONNX file is the only artefact the project ships, so its initializers are mapped back
onto the torch network: by name, and for parameters the exporter renamed (PReLU slopes,
named ``onnx::PRelu_<n>`` in graph order) by order and shape. The mapping is then proven:
the torch network and ONNX Runtime must agree on a random input, or nothing is loaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper

from engine.errors import ConfigurationError


def load_onnx_weights(net: torch.nn.Module, path: Path, example: torch.Tensor, tolerance: float = 1e-3) -> None:
    model = onnx.load(str(path))
    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    state = net.state_dict()
    renamed = [name for name in initializers if name not in state]
    missing = [key for key in state if key not in initializers and not key.endswith("num_batches_tracked")]
    if len(renamed) != len(missing):
        raise ConfigurationError(
            f"{path.name}: {len(missing)} parameters of the network are not in the file and "
            f"{len(renamed)} of the file's are not in the network: not the same architecture"
        )
    new_state = {}
    for key, value in state.items():
        if key in initializers:
            new_state[key] = torch.from_numpy(initializers[key].copy()).reshape(value.shape)
    for key, name in zip(missing, renamed):
        array = initializers[name]
        if array.size != state[key].numel():
            raise ConfigurationError(f"{path.name}: {name} {array.shape} cannot be {key} {tuple(state[key].shape)}")
        new_state[key] = torch.from_numpy(array.copy()).reshape(state[key].shape)
    for key, value in state.items():
        new_state.setdefault(key, value)
    candidate = {k: v.clone() for k, v in state.items()}
    net.load_state_dict(new_state)
    net.eval()
    with torch.no_grad():
        expected = [o.numpy() for o in _as_tuple(net(example))]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: example.numpy()})
    worst = max(float(np.max(np.abs(a - b))) for a, b in zip(expected, got))
    if worst > tolerance:
        net.load_state_dict(candidate)
        raise ConfigurationError(f"{path.name}: weights mapped back differ from the file by {worst:.2e} (> {tolerance})")
    net.train()


def _as_tuple(output) -> tuple[torch.Tensor, ...]:
    return output if isinstance(output, tuple) else (output,)
