"""A CPU stand-in for the GPU under the TensorRT backend: ``rgbir.trt.cuda``'s interface over host memory,
and a TensorRT runtime whose engine computes something checkable (per batch item: the sum of each input).

It exercises the backend's own logic — buffers, shapes, padding, graph capture and replay, slots, closing —
on a machine without a GPU. Graphs behave as CUDA's do: a launch replays exactly what was captured (the same
byte counts and addresses), so a graph kept across a shape change would return stale sizes.
"""

from __future__ import annotations

import enum
import types

import numpy as np

from fake_tensorrt import PluginRegistry
from rgbir.trt.cuda import DeviceInfo

MEMORY: dict[int, np.ndarray] = {}  # "device" and pinned allocations: pointer → bytes
_next = [4096]


def _alloc(nbytes: int) -> int:
    pointer = _next[0]
    _next[0] += int(nbytes) + 4096
    MEMORY[pointer] = np.zeros(max(int(nbytes), 1), np.uint8)
    return pointer


def _bytes(pointer: int, nbytes: int) -> np.ndarray:
    for base, block in MEMORY.items():
        if base <= pointer and pointer + nbytes <= base + block.size:
            return block[pointer - base:pointer - base + nbytes]
    raise AssertionError(f"access outside any allocation: {pointer} + {nbytes}")


class HostBuffer:
    def __init__(self, shape, dtype, mapped=False):
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        self.pointer = _alloc(nbytes)
        self.array = MEMORY[self.pointer][:nbytes].view(dtype).reshape(shape)
        self.device_pointer = self.pointer if mapped else None

    def free(self):
        MEMORY.pop(self.pointer, None)


class DeviceBuffer:
    def __init__(self, nbytes):
        self.nbytes = nbytes
        self.pointer = _alloc(nbytes)

    def free(self):
        MEMORY.pop(self.pointer, None)


class Graph:
    def __init__(self, work):
        self.work, self.launches, self.destroyed = work, 0, False

    def launch(self, stream):
        assert not self.destroyed
        self.launches += 1
        self.work()

    def destroy(self):
        self.destroyed = True


class Stream:
    handle = 7  # what execute_async_v3 receives

    def __init__(self):
        self.recording: list | None = None

    def _do(self, op):
        (self.recording.append(op) if self.recording is not None else op())

    def copy_to_device(self, device_pointer, host, nbytes):
        self._do(lambda: _bytes(device_pointer, nbytes).__setitem__(slice(None), _bytes(host.pointer, nbytes)))

    def copy_to_host(self, host, device_pointer, nbytes):
        self._do(lambda: _bytes(host.pointer, nbytes).__setitem__(slice(None), _bytes(device_pointer, nbytes)))

    def synchronize(self):
        pass

    def capture(self, work):
        self.recording = []
        CAPTURING[0] = self
        try:
            work()
        finally:
            ops, self.recording, CAPTURING[0] = self.recording, None, None
        graph = Graph(lambda: [op() for op in ops])
        CAPTURED.append(graph)
        return graph

    def destroy(self):
        pass


CAPTURED: list[Graph] = []
CAPTURING: list = [None]  # the stream being captured: TensorRT's enqueue then records instead of running


def fake_cuda(info: DeviceInfo):
    return types.SimpleNamespace(HostBuffer=HostBuffer, DeviceBuffer=DeviceBuffer, Stream=Stream, Graph=Graph,
                                 device_info=lambda index=0: info, runtime_api=lambda: types.SimpleNamespace(
                                     cudaSetDevice=lambda d: None), call=lambda function, *args, **kw: None)


def fake_tensorrt_runtime(min_batch=1, max_batch=4, version="10.3.0.26"):
    """Engine: rgb (B,3,4,4), ir (B,1,4,4) → predictions (B,2) = [sum(rgb[b]), sum(ir[b])], B in [min, max]."""
    TensorIOMode = enum.IntEnum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"])
    DataType = enum.IntEnum("DataType", ["FLOAT"])
    io = {"rgb": (3, 4, 4), "ir": (1, 4, 4), "predictions": (2,)}

    class Context:
        def __init__(self, log):
            self._shapes, self._addresses, self._log = {}, {}, log

        def set_input_shape(self, name, shape):
            if not min_batch <= shape[0] <= max_batch or tuple(shape[1:]) != io[name]:
                return False
            self._shapes[name] = tuple(shape)
            return True

        def get_tensor_shape(self, name):
            if name == "predictions":
                return (self._shapes["rgb"][0], 2)
            return self._shapes[name]

        def set_tensor_address(self, name, pointer):
            self._addresses[name] = pointer

        def execute_async_v3(self, stream):
            shapes = {n: self.get_tensor_shape(n) for n in io}

            def run():  # reads the shapes and addresses of the moment it was enqueued, as a captured graph does
                rgb, ir = (_bytes(self._addresses[n], int(np.prod(shapes[n])) * 4).view(np.float32).reshape(shapes[n])
                           for n in ("rgb", "ir"))
                out = np.stack([rgb.reshape(len(rgb), -1).sum(1), ir.reshape(len(ir), -1).sum(1)], 1)
                _bytes(self._addresses["predictions"], out.nbytes)[:] = out.astype(np.float32).view(np.uint8).ravel()

            self._log.append("execute")
            stream = CAPTURING[0]
            (stream.recording.append(run) if stream is not None else run())
            return True

    class Engine:
        num_io_tensors = 3

        def get_tensor_name(self, i):
            return list(io)[i]

        def get_tensor_mode(self, name):
            return TensorIOMode.OUTPUT if name == "predictions" else TensorIOMode.INPUT

        def get_tensor_dtype(self, name):
            return DataType.FLOAT

        def get_tensor_shape(self, name):
            return (-1, *io[name])

        def get_tensor_profile_shape(self, name, profile):
            return [(b, *io[name]) for b in (min_batch, max_batch, max_batch)]

        def create_execution_context(self):
            return Context(LOG)

    class Runtime:
        def __init__(self, logger):
            self.engine_host_code_allowed = False

        def deserialize_cuda_engine(self, data):
            return Engine() if data == b"plan" else None

    LOG: list[str] = []
    registry = PluginRegistry([])
    return types.SimpleNamespace(
        __version__=version, __name__="tensorrt", Builder=object, Logger=type("Logger", (), {
            "WARNING": 2, "__init__": lambda self, s=2: None}), Runtime=Runtime, TensorIOMode=TensorIOMode,
        nptype=lambda t: np.float32, get_plugin_registry=lambda: registry, LOG=LOG)
