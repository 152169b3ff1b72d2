"""A gRPC connection to Triton Inference Server built from :class:`TritonSettings`.

Unavailability (server down, restarting, model loading) is retried with exponential
back-off up to ``max_retries`` and then raised as :class:`TransientError`; a request the
server rejects (wrong shape, dtype, model error) is raised at once as
:class:`TritonRequestError`. Nothing here ever waits without a deadline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from engine.errors import StudyError, TransientError
from engine.settings import TritonSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

# gRPC status codes that mean "not now" rather than "never".
_TRANSIENT_STATUS = {"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.RESOURCE_EXHAUSTED"}
# Messages of a server that is not up (yet, or any more), whatever status code carries them: while
# Triton shuts down, vcf_pipeline's inner (BLS) calls fail with INTERNAL "Server not ready".
_TRANSIENT_TEXT = ("failed to connect", "server not ready", "stopping")


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def retry_while_unavailable(
    settings: TritonSettings,
    model: str,
    request: Callable[[], T],
    transient: Callable[[InferenceServerException], bool] | None = None,
    before_retry: Callable[[], None] | None = None,
) -> T:
    """``request()``, retried with exponential back-off while Triton is unavailable.

    ``transient`` (default :func:`is_transient`) says which failures may succeed later; any
    other failure is a :class:`TritonRequestError` at once. ``before_retry`` runs after each
    transient failure (e.g. to mark shared-memory regions for re-registration). After
    ``settings.max_retries`` retries the failure is a :class:`TransientError`."""
    transient = transient or is_transient
    delay = settings.retry_backoff_s
    for attempt in range(settings.max_retries + 1):
        try:
            return request()
        except InferenceServerException as exc:
            message = first_line(exc)
            if not transient(exc):
                raise TritonRequestError(f"model {model!r} rejected the request: {message}") from None
            if before_retry is not None:
                before_retry()
            if attempt == settings.max_retries:
                raise TransientError(
                    f"Triton at {settings.url} unavailable for model {model!r} after "
                    f"{attempt + 1} attempts: {message}"
                ) from None
            log.warning("Triton unavailable (%s); retry %d in %.1f s", message, attempt + 1, delay)
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")  # the loop returns or raises


class TritonRequestError(StudyError):
    """Triton refused or failed one request; retrying the same request will not help."""

    code = "triton_request"


def is_transient(exc: InferenceServerException) -> bool:
    """The server is unavailable (down, starting, stopping, overloaded): the same request may
    succeed later. The one place where this is decided, for every Triton client here."""
    status = str(exc.status() or "")
    text = str(exc).lower()
    return status in _TRANSIENT_STATUS or any(marker in text for marker in _TRANSIENT_TEXT)


class TritonConnection:
    def __init__(self, settings: TritonSettings):
        self.settings = settings
        self.client = grpcclient.InferenceServerClient(url=settings.url)

    def close(self) -> None:
        self.client.close()

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Block until the server is ready, or raise TransientError after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                if self.client.is_server_ready(client_timeout=2.0):
                    return
                last = "server not ready"
            except InferenceServerException as exc:
                last = str(exc).splitlines()[0]
            time.sleep(0.5)
        raise TransientError(f"Triton at {self.settings.url} not ready after {timeout_s:.0f} s: {last}")

    def infer(self, model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        """One inference request, retried while the server is unavailable."""
        request_inputs = []
        for name, array in inputs.items():
            tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array)
            request_inputs.append(tensor)
        request_outputs = [grpcclient.InferRequestedOutput(name) for name in outputs]
        def once() -> dict[str, np.ndarray]:
            result = self.client.infer(
                model, request_inputs, outputs=request_outputs, client_timeout=self.settings.timeout_s
            )
            return {name: result.as_numpy(name) for name in outputs}

        return retry_while_unavailable(self.settings, model, once)
