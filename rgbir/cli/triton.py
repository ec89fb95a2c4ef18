"""``rgbir triton-repo``: a Triton Inference Server model repository for an rgbir export (.onnx) or TensorRT engine
(.engine with its sidecar) — config.pbtxt with the model's tensors, batching, instances and the rgbir metadata,
optionally a preprocessing model and an ensemble that take raw 8-bit frames. Prints how to serve and call it."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    from ..serve.triton_repo import DEFAULT_MAX_BATCH, KINDS, PLATFORMS

    p = sub.add_parser("triton-repo", help="write a Triton Inference Server model repository for a model",
                       description=__doc__.replace("``", ""))
    p.add_argument("model", help="exported .onnx, or a TensorRT .engine built by 'rgbir build'")
    p.add_argument("-o", "--output", required=True, metavar="REPO", help="the repository folder (created if needed)")
    p.add_argument("--name", help="the model's name in the repository (default: the file's stem)")
    p.add_argument("--max-batch", type=int, metavar="N",
                   help=f"dynamic-batch models: largest batch Triton forms (default {DEFAULT_MAX_BATCH}, or an "
                        "engine's profile maximum); fixed-batch models are served without batching")
    p.add_argument("--queue-delay-us", type=int, default=0, metavar="US",
                   help="dynamic-batch models: microseconds a request may wait for others to join its batch "
                        "(default 0: only requests already queued are batched)")
    p.add_argument("--instances", type=int, default=1, metavar="N", help="model instances (default 1)")
    p.add_argument("--kind", choices=KINDS, default="auto",
                   help="where instances run (default auto: a GPU when the server has one)")
    p.add_argument("--platform", choices=PLATFORMS, default="auto",
                   help="auto: .engine → tensorrt, .onnx → onnxruntime; python-onnxruntime runs the ONNX file with "
                        "ONNX Runtime in a Python-backend model (servers without the ONNX Runtime backend)")
    p.add_argument("--preprocess", action="store_true",
                   help="add NAME_preprocess (letterboxes raw frames as rgbir run does) and NAME_ensemble")
    p.add_argument("--plugin", metavar="SO", help="engines: the plugin library the server must load (default: the "
                                                  "one the engine was built with)")
    p.add_argument("--force", action="store_true", help="replace the model if the repository already holds it")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..serve.triton_repo import RepoOptions, write_repository
    from .common import console

    options = RepoOptions(args.name, args.max_batch, args.queue_delay_us, args.instances, args.kind, args.platform,
                          args.preprocess, args.plugin, args.force)
    repo = write_repository(args.model, args.output, options)
    console.print(f"wrote {', '.join(repo.models)} to {repo.root}")
    if args.preprocess or args.platform == "python-onnxruntime":
        console.print("the server's Python environment needs numpy and onnxruntime" +
                      (", and rgbir for the preprocessing model" if args.preprocess else ""))
    console.print(f"serve:  tritonserver --model-repository={repo.root.resolve()} {' '.join(repo.server_flags)}"
                  .rstrip())
    console.print(f"run:    rgbir run --model triton://127.0.0.1:8000/{repo.models[0]} --rgb SRC --ir SRC")
    return 0
