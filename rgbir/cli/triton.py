"""``rgbir triton-repo``: a Triton Inference Server model repository for an rgbir export (.onnx) or TensorRT engine
(.engine with its sidecar) — config.pbtxt with the model's tensors, batching, instances and the rgbir metadata,
optionally a preprocessing model and an ensemble that take raw 8-bit frames. Prints how to serve and call it."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    from ..serve.triton_repo import RepoOptions

    p = sub.add_parser("triton-repo", help="write a Triton Inference Server model repository for a model",
                       description=__doc__.replace("``", ""))
    p.add_argument("model", help="exported .onnx, or a TensorRT .engine built by 'rgbir build'")
    p.add_argument("-o", "--output", required=True, metavar="REPO", help="the repository folder (created if needed)")
    RepoOptions.add_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..serve.triton_repo import RepoOptions, write_repository
    from .common import console

    options = RepoOptions.from_args(args)
    repo = write_repository(args.model, args.output, options)
    console.print(f"wrote {', '.join(repo.models)} to {repo.root}")
    if options.preprocess or options.platform == "python-onnxruntime":
        console.print("the server's Python environment needs numpy and onnxruntime" +
                      (", and rgbir for the preprocessing model" if options.preprocess else ""))
    console.print(f"serve:  tritonserver --model-repository={repo.root.resolve()} {' '.join(repo.server_flags)}"
                  .rstrip())
    console.print(f"run:    rgbir run --model triton://127.0.0.1:8000/{repo.models[0]} --rgb SRC --ir SRC")
    return 0
