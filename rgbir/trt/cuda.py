"""A thin layer over cuda-python's runtime API (``cuda.bindings.runtime``): devices, streams, memory, graphs.

cuda-python returns ``(error, value...)`` tuples; ``call`` turns a failure into a ``CudaError`` that names the
call and CUDA's own message. Host buffers are page-locked (needed for asynchronous copies) and, on integrated
GPUs such as Jetson Orin where host and device share memory, mapped so the GPU reads them in place (zero copy).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

from ..errors import RgbirError


class CudaError(RgbirError):
    """A CUDA runtime call failed (no device, driver too old, out of memory, ...)."""


def runtime_api():
    """``cuda.bindings.runtime``, or a clear error naming the package."""
    try:
        from cuda.bindings import runtime
    except ImportError as e:
        raise CudaError("the TensorRT backend needs cuda-python (module cuda.bindings): pip install "
                        "'cuda-python>=12.8' (or pip install 'rgbir[trt]')") from e
    return runtime


def call(function, *args, what: str | None = None):
    """Call a cuda-python runtime function; return its value(s) or raise ``CudaError`` naming the failure."""
    cudart = runtime_api()
    result = function(*args)
    error, values = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
    if error != cudart.cudaError_t.cudaSuccess:
        message = cudart.cudaGetErrorString(error)[1].decode()
        raise CudaError(f"{what or function.__name__} failed: {message} ({error.name})")
    return values[0] if len(values) == 1 else (values or None)


@dataclass
class DeviceInfo:
    index: int
    name: str
    compute_capability: tuple[int, int]
    integrated: bool  # shares memory with the host (Jetson): mapped host buffers avoid copies
    can_map_host_memory: bool
    total_memory: int
    driver_version: int  # e.g. 12060 for CUDA 12.6
    runtime_version: int


def device_info(index: int = 0) -> DeviceInfo:
    """What the GPU is; raises ``CudaError`` with CUDA's reason when there is no usable device."""
    cudart = runtime_api()
    try:
        count = call(cudart.cudaGetDeviceCount, what="looking for a CUDA GPU")
    except CudaError as e:
        raise CudaError(f"no usable CUDA GPU ({str(e).split(' failed: ')[-1]}): TensorRT needs an NVIDIA GPU and "
                        "driver (rgbir doctor); without one, run the .onnx export with ONNX Runtime") from e
    if index >= count:
        raise CudaError(f"no CUDA device {index}: this machine has {count}")
    p = call(cudart.cudaGetDeviceProperties, index)
    return DeviceInfo(index, p.name.decode().rstrip("\x00"), (p.major, p.minor), bool(p.integrated),
                      bool(p.canMapHostMemory), int(p.totalGlobalMem), call(cudart.cudaDriverGetVersion),
                      call(cudart.cudaRuntimeGetVersion))


def _view(pointer: int, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A numpy array over memory at ``pointer`` (no copy, no ownership)."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    buffer = (ctypes.c_byte * nbytes).from_address(pointer)
    return np.frombuffer(buffer, dtype=dtype).reshape(shape)


class HostBuffer:
    """Page-locked host memory seen as a numpy array; ``mapped`` also gives the GPU a pointer to it."""

    def __init__(self, shape: tuple[int, ...], dtype, mapped: bool = False):
        cudart = runtime_api()
        nbytes = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
        flags = cudart.cudaHostAllocMapped if mapped else cudart.cudaHostAllocDefault
        self.pointer = int(call(cudart.cudaHostAlloc, nbytes, flags, what=f"allocating {nbytes} B pinned memory"))
        self.array = _view(self.pointer, shape, dtype)
        self.device_pointer = int(call(cudart.cudaHostGetDevicePointer, self.pointer, 0)) if mapped else None

    def free(self) -> None:
        if self.pointer:
            call(runtime_api().cudaFreeHost, self.pointer)
            self.pointer = 0


class DeviceBuffer:
    def __init__(self, nbytes: int):
        self.nbytes = max(1, int(nbytes))
        self.pointer = int(call(runtime_api().cudaMalloc, self.nbytes, what=f"allocating {self.nbytes} B on the GPU"))

    def free(self) -> None:
        if self.pointer:
            call(runtime_api().cudaFree, self.pointer)
            self.pointer = 0


class Upload:
    """Page-locked staging plus a device buffer, grown on demand: ``put`` copies an array to the GPU
    asynchronously and returns its device pointer (``mapped``: the GPU reads the staging itself, no copy)."""

    def __init__(self, mapped: bool = False):
        self.mapped = mapped
        self.host: HostBuffer | None = None
        self.device: DeviceBuffer | None = None

    def put(self, array: np.ndarray, stream: Stream) -> int:
        nbytes = array.nbytes
        if self.host is None or self.host.array.nbytes < nbytes:
            self.free()
            self.host = HostBuffer((nbytes,), np.uint8, mapped=self.mapped)
            self.device = None if self.mapped else DeviceBuffer(nbytes)
        self.host.array[:nbytes] = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
        if self.mapped:
            return self.host.device_pointer
        stream.copy_to_device(self.device.pointer, self.host, nbytes)
        return self.device.pointer

    def free(self) -> None:
        for buffer in (self.host, self.device):
            if buffer is not None:
                buffer.free()
        self.host = self.device = None


class Stream:
    """A non-blocking CUDA stream with the copies and graph capture the backends need."""

    def __init__(self):
        cudart = runtime_api()
        self.handle = call(cudart.cudaStreamCreateWithFlags, cudart.cudaStreamNonBlocking)

    def copy_to_device(self, device_pointer: int, host: HostBuffer, nbytes: int) -> None:
        cudart = runtime_api()
        call(cudart.cudaMemcpyAsync, device_pointer, host.pointer, nbytes,
             cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self.handle)

    def copy_to_host(self, host: HostBuffer, device_pointer: int, nbytes: int) -> None:
        cudart = runtime_api()
        call(cudart.cudaMemcpyAsync, host.pointer, device_pointer, nbytes,
             cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.handle)

    def synchronize(self) -> None:
        call(runtime_api().cudaStreamSynchronize, self.handle)

    def capture(self, work) -> Graph:
        """Record what ``work()`` enqueues on this stream into a CUDA graph (nothing runs while capturing)."""
        cudart = runtime_api()
        call(cudart.cudaStreamBeginCapture, self.handle,
             cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal)
        try:
            work()
        except BaseException:
            error, graph = cudart.cudaStreamEndCapture(self.handle)  # end the capture; the first error wins
            if error == cudart.cudaError_t.cudaSuccess and graph is not None:
                cudart.cudaGraphDestroy(graph)
            raise
        return Graph(call(cudart.cudaStreamEndCapture, self.handle, what="capturing a CUDA graph"))

    def destroy(self) -> None:
        if self.handle is not None:
            call(runtime_api().cudaStreamDestroy, self.handle)
            self.handle = None


class Graph:
    def __init__(self, graph):
        cudart = runtime_api()
        self.graph = graph
        self.executable = call(cudart.cudaGraphInstantiate, graph, 0, what="instantiating a CUDA graph")

    def launch(self, stream: Stream) -> None:
        call(runtime_api().cudaGraphLaunch, self.executable, stream.handle)

    def destroy(self) -> None:
        cudart = runtime_api()
        call(cudart.cudaGraphExecDestroy, self.executable)
        call(cudart.cudaGraphDestroy, self.graph)
