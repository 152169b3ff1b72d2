"""Shared-memory regions through which the Triton client passes tensors without the wire.

A region is created once, registered with the server, and reused for every study; it grows
(re-created and re-registered) only when a larger study arrives, so its size follows the
largest volume seen. A server restart forgets registrations: the client marks the region
stale after a failed call and registers it again before the next one.

:class:`SystemShmRegion` (POSIX shared memory) needs the client and the server on one host
(same ``/dev/shm``). :class:`CudaShmRegion` (a CUDA IPC handle) needs a GPU on both sides; it is
written for GPU deployments and has not been run here (no GPU was available).
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import socket
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

ALIGN = 64
"""Tensors start at 64-byte offsets inside a region (cache lines; what CUDA kernels like)."""
_GROWTH = 1.25
_MIB = 1 << 20
_counter = itertools.count()


def aligned(nbytes: int) -> int:
    return -(-nbytes // ALIGN) * ALIGN


def layout(sizes: list[int]) -> tuple[list[int], int]:
    """Offsets of tensors of ``sizes`` bytes packed at aligned offsets, and the total size."""
    offsets, at = [], 0
    for size in sizes:
        offsets.append(at)
        at += aligned(size)
    return offsets, at


def is_local_url(url: str) -> bool:
    """Whether ``host:port`` names this machine (loopback, or a name resolving to one of its addresses)."""
    host = url.rsplit(":", 1)[0].strip("[]") if ":" in url else url
    if host in {"localhost", "127.0.0.1", "::1", "0.0.0.0"} or host.startswith("127."):
        return True
    try:
        address = socket.gethostbyname(host)
    except OSError:
        return False
    if address.startswith("127."):
        return True
    try:
        own = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
    except OSError:
        own = set()
    return address in own


def client_has_gpu() -> bool:
    """An NVIDIA GPU with its driver on this machine (what CUDA shared memory needs)."""
    return Path("/dev/nvidiactl").exists() and (shutil.which("nvidia-smi") is not None or Path("/proc/driver/nvidia").is_dir())


class SystemShmRegion:
    """One POSIX shared-memory region registered with Triton under a process-unique name."""

    kind = "system shared memory"

    def __init__(self, client, tag: str):
        self.client = client
        self.name = f"vcfscreen_{os.getpid()}_{next(_counter)}_{tag}"
        self.key = f"/{self.name}"
        self.handle = None
        self.size = 0
        self.registered = False

    def reserve(self, nbytes: int, timeout_s: float | None = None) -> None:
        """At least ``nbytes`` of capacity, registered with the server."""
        if nbytes > self.size:
            self.close()
            self.size = max(_MIB, int(-(-int(nbytes * _GROWTH) // _MIB) * _MIB))
            self._create()
        if not self.registered:
            self._register(timeout_s)

    def _create(self) -> None:
        import tritonclient.utils.shared_memory as shm

        self.handle = shm.create_shared_memory_region(self.name, self.key, self.size, create_only=True)

    def _register(self, timeout_s: float | None) -> None:
        from tritonclient.utils import InferenceServerException

        try:  # a registration left over from before a restart of ours would make register fail
            self.client.unregister_system_shared_memory(self.name, client_timeout=timeout_s)
        except InferenceServerException:
            pass
        self.client.register_system_shared_memory(self.name, self.key, self.size, client_timeout=timeout_s)
        self.registered = True

    def mark_stale(self) -> None:
        self.registered = False

    def write(self, arrays: list[np.ndarray], offsets: list[int]) -> None:
        import tritonclient.utils.shared_memory as shm

        for array, offset in zip(arrays, offsets):
            shm.set_shared_memory_region(self.handle, [np.ascontiguousarray(array)], offset=offset)

    def read(self, dtype: np.dtype, shape: tuple[int, ...], offset: int) -> np.ndarray:
        """A copy (the region is overwritten by the next request)."""
        import tritonclient.utils.shared_memory as shm

        view = shm.get_contents_as_numpy(self.handle, dtype, shape, offset=offset)
        out = np.array(view, copy=True)
        del view
        return out

    def close(self) -> None:
        """Unregister (best effort: the server may be gone) and free the region."""
        from tritonclient.utils import InferenceServerException

        if self.handle is None:
            return
        if self.registered:
            try:
                self.client.unregister_system_shared_memory(self.name, client_timeout=5.0)
            except InferenceServerException as exc:
                log.debug("could not unregister %s: %s", self.name, str(exc).splitlines()[0])
        import tritonclient.utils.shared_memory as shm

        shm.destroy_shared_memory_region(self.handle)
        self.handle, self.size, self.registered = None, 0, False


class CudaShmRegion(SystemShmRegion):
    """The same contract on GPU 0 through a CUDA IPC handle (GPU deployments; not run here)."""

    kind = "CUDA shared memory"
    device_id = 0

    def _create(self) -> None:
        import tritonclient.utils.cuda_shared_memory as cudashm

        self.handle = cudashm.create_shared_memory_region(self.name, self.size, self.device_id)

    def _register(self, timeout_s: float | None) -> None:
        import tritonclient.utils.cuda_shared_memory as cudashm
        from tritonclient.utils import InferenceServerException

        try:
            self.client.unregister_cuda_shared_memory(self.name, client_timeout=timeout_s)
        except InferenceServerException:
            pass
        raw = cudashm.get_raw_handle(self.handle)
        self.client.register_cuda_shared_memory(self.name, raw, self.device_id, self.size, client_timeout=timeout_s)
        self.registered = True

    def write(self, arrays: list[np.ndarray], offsets: list[int]) -> None:
        # The CUDA helpers copy whole buffers from offset 0: pack the tensors host-side first.
        import tritonclient.utils.cuda_shared_memory as cudashm

        end = max((o + a.nbytes for a, o in zip(arrays, offsets)), default=0)
        packed = np.zeros(end, dtype=np.uint8)
        for array, offset in zip(arrays, offsets):
            packed[offset : offset + array.nbytes] = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
        cudashm.set_shared_memory_region(self.handle, [packed])

    def read(self, dtype: np.dtype, shape: tuple[int, ...], offset: int) -> np.ndarray:
        import tritonclient.utils.cuda_shared_memory as cudashm

        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        raw = cudashm.get_contents_as_numpy(self.handle, np.uint8, [offset + nbytes])
        return np.array(raw[offset:], copy=True).view(dtype).reshape(shape)

    def close(self) -> None:
        from tritonclient.utils import InferenceServerException

        if self.handle is None:
            return
        if self.registered:
            try:
                self.client.unregister_cuda_shared_memory(self.name, client_timeout=5.0)
            except InferenceServerException as exc:
                log.debug("could not unregister %s: %s", self.name, str(exc).splitlines()[0])
        import tritonclient.utils.cuda_shared_memory as cudashm

        cudashm.destroy_shared_memory_region(self.handle)
        self.handle, self.size, self.registered = None, 0, False
