"""A model on a Triton Inference Server as a backend: ``triton://HOST[:PORT]/MODEL[/VERSION]`` over HTTP (port
8000) or ``triton+grpc://HOST[:PORT]/MODEL[/VERSION]`` over gRPC (port 8001), with ``?timeout=S`` (per request,
30) and ``?connect_timeout=S`` (5). The rgbir metadata comes from the model config's parameters (``rgbir
triton-repo`` writes it), so pairing, sinks and tracking run unchanged against a remote server. A model that takes
raw frames (``NAME_ensemble``, written with ``--preprocess``) gets the 8-bit frames themselves."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.client import HTTPException
from urllib.parse import parse_qs, urlsplit

import numpy as np

from ...errors import RgbirError
from ...metadata import ModelMetadata
from ...triton_contract import FRAME_SUFFIX, INPUTS_PARAMETER, LETTERBOX_SUFFIX, METADATA_PARAMETER, network_tensors
from .base import Backend, TensorSpec

PROTOCOLS = {"triton": "http", "triton+http": "http", "triton+grpc": "grpc"}  # URL scheme → protocol
DEFAULT_PORTS = {"http": 8000, "grpc": 8001}
FORM = "triton://HOST:PORT/MODEL (HTTP) or triton+grpc://HOST:PORT/MODEL (gRPC)"


def is_triton_url(model) -> bool:
    scheme, sep, _ = str(model).partition("://")
    return bool(sep) and scheme.lower() in PROTOCOLS


@dataclass(frozen=True)
class TritonAddress:
    """Where a model is served, and how long to wait for the server."""

    url: str
    protocol: str  # "http" | "grpc"
    host: str
    port: int
    model: str
    version: str = ""  # "": the server's version policy (the latest)
    timeout: float = 30.0  # seconds one request may take
    connect_timeout: float = 5.0  # seconds to reach the server

    @classmethod
    def parse(cls, url: str) -> TritonAddress:
        parts = urlsplit(url)
        protocol = PROTOCOLS.get(parts.scheme.lower())
        path = [p for p in parts.path.split("/") if p]
        try:
            port = parts.port
        except ValueError:  # not a number, or out of range
            port = -1
        if protocol is None or not parts.hostname or port == -1 or len(path) not in (1, 2) or \
                (len(path) == 2 and not path[1].isdigit()):
            raise RgbirError(f"'{url}' is not a Triton model address: give {FORM}, with /VERSION optionally")
        query = parse_qs(parts.query)
        unknown = sorted(set(query) - {"timeout", "connect_timeout"})
        if unknown:
            raise RgbirError(f"{url}: unknown setting(s) {', '.join(unknown)} (known: timeout, connect_timeout)")
        try:
            timeouts = {key: float(values[-1]) for key, values in query.items()}
        except ValueError as e:
            raise RgbirError(f"{url}: timeouts are seconds ({e})") from e
        if any(t <= 0 for t in timeouts.values()):
            raise RgbirError(f"{url}: timeouts must be > 0 seconds")
        return cls(url, protocol, parts.hostname, port or DEFAULT_PORTS[protocol], path[0],
                   path[1] if len(path) == 2 else "", **timeouts)

    @property
    def server(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _client_module(protocol: str):
    try:
        if protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
    except ImportError as e:
        raise RgbirError(f"triton:// models need tritonclient ({e.name} is missing): pip install 'rgbir[serve]'") from e
    return module


def _spec(tensor: dict, batching: bool) -> TensorSpec:
    """A config's input/output entry as a TensorSpec (the batch dimension first when Triton batches)."""
    from tritonclient.utils import triton_to_np_dtype

    dims = tuple(None if int(d) < 0 else int(d) for d in tensor.get("dims", []))
    dtype = triton_to_np_dtype(tensor.get("data_type", "TYPE_FP32").removeprefix("TYPE_"))
    return TensorSpec(tensor["name"], ((None,) if batching else ()) + dims, np.dtype(dtype))


class TritonBackend(Backend):
    """Calls one model on a Triton server. Each calling thread gets its own client: tritonclient's HTTP client is
    bound to the thread that made it."""

    name = "triton"

    def __init__(self, address: TritonAddress | str):
        self.address = TritonAddress.parse(address) if isinstance(address, str) else address
        self.client_module = _client_module(self.address.protocol)
        self._local = threading.local()
        self._clients: list = []
        self._lock = threading.Lock()
        try:
            config = self._model_config()
        except BaseException:
            self.close()
            raise
        parameters = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        if METADATA_PARAMETER not in parameters:
            raise RgbirError(f"model '{self.address.model}' on Triton at {self.address.server} carries no rgbir "
                             "metadata in its config parameters: write its repository with 'rgbir triton-repo'")
        meta = ModelMetadata.from_json(parameters[METADATA_PARAMETER])
        self.frames_model = parameters.get(INPUTS_PARAMETER) == "frames"  # an ensemble that letterboxes
        max_batch = int(config.get("max_batch_size", 0))
        outputs = [_spec(t, max_batch > 0) for t in config.get("output", [])
                   if not t["name"].endswith(LETTERBOX_SUFFIX)]
        if self.frames_model:  # what the network behind the preprocessing takes, for the runtime's checks
            inputs = [TensorSpec(t.name, (None, *t.dims), np.dtype(t.dtype)) for t in network_tensors(meta)[0]]
        else:
            inputs = [_spec(t, max_batch > 0) for t in config.get("input", [])]
        super().__init__(meta, inputs, outputs, max_batch or None)

    # connection -------------------------------------------------------------------------------------------------
    def _client(self):
        client = getattr(self._local, "client", None)
        if client is None:
            a = self.address
            if a.protocol == "http":
                client = self.client_module.InferenceServerClient(a.server, connection_timeout=a.connect_timeout,
                                                                  network_timeout=a.timeout)
            else:
                client = self.client_module.InferenceServerClient(a.server)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def _deadline(self, seconds: float) -> dict:
        """gRPC takes a timeout per call; the HTTP client has its own from construction."""
        return {"client_timeout": seconds} if self.address.protocol == "grpc" else {}

    def _call(self, method, *args, liveness: bool = False, **kwargs):
        """One client call; whatever goes wrong is one RgbirError naming the server and what to do. ``liveness``:
        the first call, bounded by ?connect_timeout over gRPC (the HTTP client bounds every call by ?timeout)."""
        from tritonclient.utils import InferenceServerException

        a = self.address
        setting = "connect_timeout" if liveness and a.protocol == "grpc" else "timeout"
        seconds = getattr(a, setting)
        try:
            return method(*args, **kwargs, **self._deadline(seconds))
        except InferenceServerException as e:
            status, message = str(e.status() or ""), " ".join(str(e.message() or e).split())
            if status.endswith("UNAVAILABLE"):  # gRPC: '... last error: ...: Connection refused' → its last part
                raise self._unreachable(message.rsplit(": ", 1)[-1]) from e
            if status.endswith("DEADLINE_EXCEEDED"):
                raise self._too_slow(seconds, setting) from e
            raise RgbirError(f"Triton at {a.server}, model '{a.model}': {message}") from e
        except TimeoutError as e:
            raise self._too_slow(seconds, setting) from e
        except (OSError, HTTPException) as e:  # HTTP: refused, reset, or closed mid-response
            raise self._unreachable(getattr(e, "strerror", None) or str(e).rstrip(".") or type(e).__name__) from e

    def _unreachable(self, reason: str) -> RgbirError:
        return RgbirError(f"Triton at {self.address.server} ({self.address.protocol}) does not answer ({reason}): "
                          f"start tritonserver there, or correct --model {self.address.url}")

    def _too_slow(self, seconds: float, setting: str) -> RgbirError:
        return RgbirError(f"Triton at {self.address.server} did not answer within {seconds:g} s: the server is stuck "
                          f"or overloaded (a longer wait: ?{setting}=S in --model)")

    def _model_config(self) -> dict:
        """The model's config, once the server is live and the model ready (else an error naming what is)."""
        a, client = self.address, self._client()
        if not self._call(client.is_server_live, liveness=True):
            raise self._unreachable("the server is not live yet")
        if not self._call(client.is_model_ready, a.model, a.version):
            index = self._call(client.get_model_repository_index)
            index = index.get("models", []) if isinstance(index, dict) else index  # gRPC JSON | HTTP list
            ready = sorted({m["name"] for m in index if m.get("state") == "READY"})
            version = f" version {a.version}" if a.version else ""
            raise RgbirError(f"Triton at {a.server} has no ready model '{a.model}'{version} (ready: "
                             f"{', '.join(ready) or 'none'}): check the name, or the server's log for why it did "
                             "not load")
        if a.protocol == "grpc":
            return self._call(client.get_model_config, a.model, a.version, as_json=True)["config"]
        return self._call(client.get_model_config, a.model, a.version)

    # inference --------------------------------------------------------------------------------------------------
    def _request(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from tritonclient.utils import np_to_triton_dtype

        module, a = self.client_module, self.address
        inputs = []
        for name, array in feeds.items():
            tensor = module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        outputs = [module.InferRequestedOutput(n) for n in self.output_names]
        result = self._call(self._client().infer, a.model, inputs, model_version=a.version, outputs=outputs)
        return {n: result.as_numpy(n) for n in self.output_names}

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.takes_frames:
            raise RgbirError(f"model '{self.address.model}' takes raw 8-bit frames (an ensemble with preprocessing): "
                             "address the model behind it to send network inputs")
        return self._request(feeds)

    @property
    def takes_frames(self) -> bool:
        """A frames model letterboxes on the server: frames go as they are (boxes map back with the same
        geometry, computed here)."""
        return self.frames_model

    def infer_frames(self, rgb: list[np.ndarray], ir: list[np.ndarray] | None = None):
        """8-bit frames (BGR or grey) to a frames model, one request per pair; returns (outputs, None)."""
        columns = self.frame_columns(rgb, ir)
        results = [self._request({name + FRAME_SUFFIX: _frame(f) for name, f in zip(columns, pair)})
                   for pair in zip(*columns.values())]
        return {n: np.concatenate([r[n] for r in results]) for n in self.output_names}, None

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()


def _frame(image: np.ndarray) -> np.ndarray:
    """A frame as the preprocessing model takes it: uint8, H x W x C (grey gets C = 1)."""
    if image.dtype != np.uint8:
        raise RgbirError(f"the server's preprocessing takes 8-bit frames, got {image.dtype}: convert thermal frames "
                         "with --agc (not none)")
    return np.ascontiguousarray(image[..., None] if image.ndim == 2 else image)
