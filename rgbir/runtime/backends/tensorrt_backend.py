"""TensorRT backend: a serialized engine run with cuda-python (TensorRT 10.x / 11.x or TensorRT-RTX runtime API).

Per execution slot (one per concurrent caller, e.g. one per camera pair's pipeline): its own execution context
and CUDA stream, device buffers allocated once at the profile's largest shapes, and page-locked host buffers.
A call copies inputs in, ``execute_async_v3``s and copies outputs out on that stream; with ``cuda_graph`` the
three are captured once per input shape and replayed as one graph launch. On integrated GPUs (Jetson) the host
buffers are mapped into the GPU's address space and bound directly, so no copies are made at all. A captured
graph belongs to the context state it was captured in (TensorRT: changing the context afterwards makes replay
undefined), so each slot keeps one graph and recaptures after a shape change. With
``gpu_preprocess`` the pipeline hands over 8-bit frames and the letterbox runs on the GPU (``infer_frames``).
A TensorRT-RTX engine (its sidecar says so) runs with the ``tensorrt_rtx`` module on an RTX GPU, which
JIT-compiles it at load; the compiled kernels are kept in a runtime cache between runs.
"""

from __future__ import annotations

import queue
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ...errors import RgbirError
from ...files import file_sha256
from ...trt import cuda, registry
from ...trt.runtime_cache import RuntimeCache, runtime_cache_path
from ...trt.sidecar import check_compatible, read_sidecar
from .base import Backend, TensorSpec

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


class _Slot:
    """One execution context with its stream and buffers; used by one caller at a time."""

    def __init__(self, create_context, inputs: list[TensorSpec], outputs: list[TensorSpec],
                 max_shapes: dict[str, tuple[int, ...]], zero_copy: bool, cuda_graph: bool):
        self.inputs, self.outputs = inputs, outputs
        self.context = create_context()
        if self.context is None:
            raise RgbirError("TensorRT could not create an execution context (out of GPU memory?)")
        self.stream = cuda.Stream()
        self.zero_copy, self.cuda_graph = zero_copy, cuda_graph
        self.host: dict[str, cuda.HostBuffer] = {}
        self.device: dict[str, int] = {}
        self.owned: list[cuda.DeviceBuffer] = []
        for spec in inputs + outputs:
            host = cuda.HostBuffer(max_shapes[spec.name], spec.dtype, mapped=zero_copy)
            self.host[spec.name] = host
            if zero_copy:
                self.device[spec.name] = host.device_pointer
            else:
                buffer = cuda.DeviceBuffer(host.array.nbytes)
                self.owned.append(buffer)
                self.device[spec.name] = buffer.pointer
            self.context.set_tensor_address(spec.name, self.device[spec.name])
        self.graph: cuda.Graph | None = None  # captured at the current input shapes
        self.shape_key: tuple | None = None

    def _enqueue(self, sizes: dict[str, int], copy_inputs: bool = True) -> None:
        """Copy in, execute, copy out — all asynchronous on this slot's stream."""
        if copy_inputs and not self.zero_copy:
            for spec in self.inputs:
                self.stream.copy_to_device(self.device[spec.name], self.host[spec.name], sizes[spec.name])
        if not self.context.execute_async_v3(int(self.stream.handle)):
            raise RgbirError("TensorRT execute_async_v3 failed (see the TensorRT log above)")
        if not self.zero_copy:
            for spec in self.outputs:
                self.stream.copy_to_host(self.host[spec.name], self.device[spec.name], sizes[spec.name])

    def _views(self, input_shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
        """Set the input shapes (when they changed) and return host views of every tensor at its current shape."""
        key = tuple(input_shapes[s.name] for s in self.inputs)
        if key != self.shape_key:  # new input shapes: tell TensorRT; the captured graph no longer applies
            self._drop_graph()
            self.shape_key = None  # until every input is set: a refused shape must not leave a stale key
            for spec in self.inputs:
                if not self.context.set_input_shape(spec.name, input_shapes[spec.name]):
                    raise RgbirError(f"input '{spec.name}' of shape {input_shapes[spec.name]} is outside the "
                                     "engine's optimisation profile: rebuild it with 'rgbir build --batch MIN,OPT,MAX'")
            self.shape_key = key
        shapes = {s.name: tuple(self.context.get_tensor_shape(s.name)) for s in self.outputs}
        shapes.update(input_shapes)
        return {n: self.host[n].array.reshape(-1)[:int(np.prod(shape))].reshape(shape)
                for n, shape in shapes.items()}

    def _drop_graph(self) -> None:
        if self.graph is not None:
            self.graph.destroy()
            self.graph = None

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        views = self._views({s.name: feeds[s.name].shape for s in self.inputs})
        for spec in self.inputs:
            views[spec.name][...] = feeds[spec.name]
        sizes = {n: v.nbytes for n, v in views.items()}
        if not self.cuda_graph:
            self._enqueue(sizes)
        elif self.graph is not None:
            self.graph.launch(self.stream)
        else:  # TensorRT needs one plain enqueue after a shape change before it can be captured
            self._enqueue(sizes)
            self.stream.synchronize()
            self.graph = self.stream.capture(lambda: self._enqueue(sizes))
            self.graph.launch(self.stream)
        self.stream.synchronize()
        return {s.name: views[s.name].copy() for s in self.outputs}

    def run_frames(self, frames: dict[str, list[np.ndarray]], specs: dict, letterbox,
                   batch: int) -> tuple[dict, list[list]]:
        """Letterbox 8-bit frames on the GPU into the inputs, then execute; returns outputs and each frame's
        LetterboxInfo. Slots past the frames (a fixed batch larger than the call) are zeroed."""
        count = len(next(iter(frames.values())))
        views = self._views({s.name: (batch, *self.host[s.name].array.shape[1:]) for s in self.inputs})
        infos = [[] for _ in range(count)]
        for spec in self.inputs:
            pointer = self.device[spec.name]
            for i, frame in enumerate(frames[spec.name]):
                infos[i].append(letterbox(frame, specs[spec.name], i, pointer, spec.dtype, self.stream,
                                          self.zero_copy))
            if count < batch:
                used = views[spec.name][:count].nbytes
                cuda.call(cuda.runtime_api().cudaMemsetAsync, pointer + used, 0, views[spec.name].nbytes - used,
                          self.stream.handle)
        self._enqueue({n: v.nbytes for n, v in views.items()}, copy_inputs=False)
        self.stream.synchronize()
        return {s.name: views[s.name].copy() for s in self.outputs}, infos

    def close(self) -> None:
        self._drop_graph()
        for host in self.host.values():
            host.free()
        for buffer in self.owned:
            buffer.free()
        self.stream.destroy()
        self.context = None


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, engine: str | Path, device: int = 0, cuda_graph: bool = False, contexts: int = 1,
                 zero_copy: bool | None = None, plugin_library: str | Path | None = None,
                 gpu_preprocess: bool = False):
        engine = Path(engine)
        if not engine.is_file():
            raise RgbirError(f"no such TensorRT engine: {engine}")
        if contexts < 1:
            raise RgbirError(f"contexts must be >= 1, got {contexts}")
        sidecar = read_sidecar(engine)
        if gpu_preprocess and sidecar is None:
            raise RgbirError(f"GPU preprocessing needs the engine's metadata: {engine} has no sidecar JSON (build it "
                             "with 'rgbir build')")
        edition = sidecar.edition if sidecar is not None else "standard"
        trt = registry.tensorrt_module(edition)
        info = self._device(device, edition, sidecar, engine)
        super().__init__(sidecar.model if sidecar is not None else None)
        self.device_index = device
        cuda.call(cuda.runtime_api().cudaSetDevice, device)
        if sidecar is not None:
            self.warnings += check_compatible(sidecar, trt.__version__, info.name, info.compute_capability, engine,
                                             info.integrated, registry.edition_of(trt))
        if not hasattr(trt, "Builder") and not (sidecar and sidecar.version_compatible):
            raise RgbirError(f"only TensorRT's lean runtime is installed, and it runs version-compatible engines "
                             f"only: rebuild {engine} with 'rgbir build --version-compatible' or install tensorrt")
        library = self._plugin(trt, sidecar, plugin_library)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.runtime.engine_host_code_allowed = bool(sidecar and sidecar.version_compatible)
        plan = engine.read_bytes()
        self.engine = self.runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise RgbirError(f"TensorRT could not deserialize {engine} (see its log above): rebuild it with "
                             "'rgbir build' for this TensorRT and GPU")
        self.runtime_cache = RuntimeCache(self.engine, runtime_cache_path(engine, plan)) if edition == "rtx" else None
        create_context = self.engine.create_execution_context if self.runtime_cache is None else \
            self.runtime_cache.create_context
        self._inputs, self._outputs, max_shapes, self.min_batch = self._tensors(trt, create_context)
        self.max_batch = max_shapes[self._inputs[0].name][0]
        self.zero_copy = info.integrated and info.can_map_host_memory if zero_copy is None else zero_copy
        self.slots: list[_Slot] = []
        self.letterboxes: dict[int, object] | None = None
        try:
            for _ in range(contexts):
                self.slots.append(_Slot(create_context, self._inputs, self._outputs, max_shapes, self.zero_copy,
                                        cuda_graph))
            if gpu_preprocess:
                from ..gpu_preprocess import DeviceLetterbox

                self.letterboxes = {id(slot): DeviceLetterbox(self.metadata, library) for slot in self.slots}
        except BaseException:
            self._release()
            raise
        self.free: queue.Queue[_Slot] = queue.Queue()
        for slot in self.slots:
            self.free.put(slot)
        self.closed = False

    @staticmethod
    def _device(index: int, edition: str, sidecar, engine: Path) -> cuda.DeviceInfo:
        """The GPU to run on; for a TensorRT-RTX engine the refusal names the GPUs it was built for."""
        try:
            return cuda.device_info(index)
        except cuda.CudaError as e:
            if edition != "rtx":
                raise
            raise cuda.CudaError(f"{engine} is a TensorRT-RTX engine, compiled when loaded for an NVIDIA RTX GPU "
                                 f"(compute capability {', '.join(sidecar.compute_targets)}), and there is no usable "
                                 f"GPU here ({str(e).split(' (')[0]}): run it on such a GPU, or run the .onnx export "
                                 "with ONNX Runtime") from e

    def _plugin(self, trt, sidecar, explicit) -> Path | None:
        """Register the plugin library the engine needs: the given one, else the search path, else the one it
        was built with (named in the sidecar); none when the plan embeds it."""
        if sidecar is not None and sidecar.plugins_embedded and explicit is None:
            return None
        needed = bool(sidecar and sidecar.plugin_library)
        built_with = Path(sidecar.plugin_library) if needed else None
        if explicit is None and built_with is not None:
            try:
                library = registry.register_plugins(None, trt)
            except RgbirError:
                if not built_with.is_file():
                    raise
                library = registry.register_plugins(built_with, trt)
        else:
            library = registry.register_if_present(explicit, trt, required=needed)
        if library is not None and needed and sidecar.plugin_sha256 and file_sha256(library) != sidecar.plugin_sha256:
            self.warnings.append(f"plugin library {library} differs from the one the engine was built with "
                                 f"({sidecar.plugin_library}): rebuild the engine if its attention misbehaves")
        return library

    def _tensors(self, trt, create_context):
        """Input/output specs, the largest shape each tensor takes (profile 0's max for a dynamic batch) and the
        smallest batch the engine accepts."""
        e = self.engine
        inputs, outputs, max_shapes, min_batch = [], [], {}, 1
        probe = create_context()
        for i in range(e.num_io_tensors):
            name = e.get_tensor_name(i)
            shape = tuple(e.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(e.get_tensor_dtype(name)))
            spec = TensorSpec(name, tuple(d if d >= 0 else None for d in shape), dtype)
            if e.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                inputs.append(spec)
                if -1 in shape:
                    low, _, high = e.get_tensor_profile_shape(name, 0)
                    max_shapes[name] = tuple(high)
                    min_batch = max(min_batch, tuple(low)[0])
                else:
                    max_shapes[name] = shape
                probe.set_input_shape(name, max_shapes[name])
            else:
                outputs.append(spec)
        for spec in outputs:  # output shapes follow from the inputs' largest shapes
            max_shapes[spec.name] = tuple(probe.get_tensor_shape(spec.name))
        del probe
        return inputs, outputs, max_shapes, min_batch

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Thread-safe: each call takes a free execution slot (context + stream), so callers run concurrently. A
        batch below the engine's smallest is padded with zeros (and the padding's outputs dropped)."""
        count = len(feeds[self._inputs[0].name])
        if count < self.min_batch:
            feeds = {n: np.concatenate([a, np.zeros((self.min_batch - count, *a.shape[1:]), a.dtype)])
                     for n, a in feeds.items()}
        with self._slot() as slot:
            outputs = slot.run(feeds)
        return {n: o[:count] for n, o in outputs.items()}

    @contextmanager
    def _slot(self):
        """A free execution slot, on this backend's GPU (the current device is per host thread)."""
        if self.closed:
            raise RgbirError("this TensorRT backend is closed")
        slot = self.free.get()
        try:
            cuda.call(cuda.runtime_api().cudaSetDevice, self.device_index)
            yield slot
        finally:
            self.free.put(slot)

    @property
    def takes_frames(self) -> bool:
        """With GPU preprocessing the frames come as they are (``infer_frames``), else the CPU letterbox."""
        return self.letterboxes is not None

    def infer_frames(self, rgb: list[np.ndarray], ir: list[np.ndarray] | None = None):
        """8-bit frames in (BGR/grey, any size), letterboxed on the GPU; returns (outputs, LetterboxInfo per input
        per frame). Needs ``gpu_preprocess=True``."""
        if self.letterboxes is None:
            raise RgbirError("this TensorRT backend was opened without gpu_preprocess")
        frames = self.frame_columns(rgb, ir)
        count = len(frames["rgb"])
        if not 1 <= count <= self.max_batch:
            raise RgbirError(f"{count} frame pairs in one call; this engine takes 1 to {self.max_batch}")
        batch = self.metadata.batch or max(count, self.min_batch)
        specs = {s.name: s for s in self.metadata.inputs}
        with self._slot() as slot:
            outputs, infos = slot.run_frames(frames, specs, self.letterboxes[id(slot)], batch)
        return {n: o[:count] for n, o in outputs.items()}, infos

    def _release(self) -> None:
        for letterbox in (self.letterboxes or {}).values():
            letterbox.free()
        for slot in self.slots:
            slot.close()
        self.slots = []

    def close(self) -> None:
        """Free device memory once every slot is back (a call still running on another thread finishes first)."""
        if self.closed:
            return
        self.closed = True
        for _ in self.slots:
            self.free.get()
        if self.runtime_cache is not None:
            self.runtime_cache.save()
        self._release()
