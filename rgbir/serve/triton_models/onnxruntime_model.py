"""Triton Python-backend model that runs ``model.onnx`` (beside this file) with ONNX Runtime, for servers without
the ONNX Runtime backend (the tritonserver inside nvidia-pytriton has the Python backend only). The server's Python
environment needs numpy and onnxruntime (onnxruntime-gpu for KIND_GPU instances), not rgbir. Requests that Triton's
dynamic batcher put together run as one ONNX Runtime call."""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        import onnxruntime as ort

        config = json.loads(args["model_config"])
        self.batching = config["max_batch_size"] > 0
        self.inputs = [t["name"] for t in config["input"]]
        self.outputs = [t["name"] for t in config["output"]]
        providers = ["CPUExecutionProvider"]
        if args["model_instance_kind"] == "GPU":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise RuntimeError("a KIND_GPU instance needs onnxruntime-gpu in the server's Python environment "
                                   "(or write the repository with rgbir triton-repo --kind cpu)")
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": int(args["model_instance_device_id"])}))
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = ort.InferenceSession(str(path), providers=providers)

    def execute(self, requests):
        feeds = [{name: pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.inputs}
                 for r in requests]
        try:
            results = self._run_batched(feeds) if self.batching and len(feeds) > 1 else \
                [self.session.run(self.outputs, f) for f in feeds]
        except Exception as e:  # one error response per request: the server stays up
            return [pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(e)))
                    for _ in requests]
        return [pb_utils.InferenceResponse([pb_utils.Tensor(n, o) for n, o in zip(self.outputs, out)])
                for out in results]

    def _run_batched(self, feeds):
        """One call for all requests, concatenated along the batch dimension, then split back per request."""
        sizes = [len(f[self.inputs[0]]) for f in feeds]
        joined = {name: np.concatenate([f[name] for f in feeds]) for name in self.inputs}
        outputs = self.session.run(self.outputs, joined)
        bounds = np.cumsum(sizes)[:-1]
        return list(zip(*(np.split(o, bounds) for o in outputs)))
