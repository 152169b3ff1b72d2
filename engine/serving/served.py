"""Compare what a Triton server serves with what the client expects, before the first study.

Input is Triton's own answers (``get_model_metadata`` and ``get_model_config`` as JSON), so
the check sees exactly what requests will meet: names, dtypes, shapes (with the batch axis
Triton adds), ``max_batch_size``, and the parameters the repository generator recorded
(class names, crop size, weights version). Every difference is reported with both sides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.serving.spec import ModelSpec


@dataclass(frozen=True)
class ServedModel:
    """What the server says about one model."""

    name: str
    metadata: Mapping[str, Any]
    config: Mapping[str, Any]

    @property
    def parameters(self) -> dict[str, str]:
        return {k: v.get("string_value", "") for k, v in self.config.get("parameters", {}).items()}

    @property
    def max_batch_size(self) -> int:
        return int(self.config.get("max_batch_size", 0))

    @property
    def triton_versions(self) -> list[str]:
        return [str(v) for v in self.metadata.get("versions", [])]


def _tensors(metadata: Mapping[str, Any], key: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {t["name"]: (t["datatype"], tuple(int(d) for d in t.get("shape", []))) for t in metadata.get(key, [])}


def compare(served: ServedModel, expected: ModelSpec) -> list[str]:
    """Differences between a served model and the client's expectation, each naming both sides."""
    problems = []
    if served.max_batch_size != expected.max_batch_size:
        problems.append(
            f"{expected.name}: the server's max_batch_size is {served.max_batch_size}, this client expects {expected.max_batch_size}"
        )
    for key, specs in (("inputs", expected.inputs), ("outputs", expected.outputs)):
        have = _tensors(served.metadata, key)
        want = {t.name: (t.dtype, expected.full_shape(t)) for t in specs}
        if sorted(have) != sorted(want):
            problems.append(f"{expected.name}: the server's {key} are {sorted(have)}, this client expects {sorted(want)}")
            continue
        for name, (dtype, shape) in want.items():
            if have[name] != (dtype, shape):
                problems.append(
                    f"{expected.name}: {key[:-1]} {name!r} is served as {have[name][0]} {list(have[name][1])}, "
                    f"this client expects {dtype} {list(shape)}"
                )
    return problems


def weights_version(served: ServedModel) -> str | None:
    """``<weights version>+<sha256 prefix>`` from the generated parameters (None if absent)."""
    params = served.parameters
    version, sha = params.get("weights_version"), params.get("weights_sha256")
    if not version or not sha:
        return None
    return f"{version}+{sha[:12]}"
