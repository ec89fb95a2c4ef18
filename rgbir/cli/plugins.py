"""``rgbir plugins``: compile the TensorRT plugin library, or show where it is and what it registers."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import console


def add_parser(sub) -> None:
    p = sub.add_parser("plugins", help="compile or inspect the TensorRT plugin library",
                       description=__doc__.replace("``", ""))
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    b = actions.add_parser("compile", help="compile the plugin library (CMake + nvcc, TensorRT headers only)")
    b.add_argument("--tensorrt-include", help="directory with NvInferRuntime.h (default: RGBIR_TENSORRT_INCLUDE, "
                                             "TENSORRT_ROOT/include, system dirs, kernel-lens)")
    b.add_argument("--arch", default="native",
                   help="native (this machine's GPUs), orin (sm_87), desktop (sm_75-sm_90 + PTX) or a list like 75,86")
    b.add_argument("-o", "--output-dir", type=Path, help="where to put the library (default: ~/.cache/rgbir/plugins)")
    b.add_argument("--jobs", type=int, default=2)
    b.set_defaults(run=run_compile)
    i = actions.add_parser("info", help="find the library and list the plugins it registers with TensorRT")
    i.add_argument("--library", help="library path (default: the search path)")
    i.add_argument("--tensorrt", choices=("auto", "standard", "rtx"), default="auto",
                   help="the TensorRT edition to load it in (auto: whichever is installed, TensorRT first)")
    i.set_defaults(run=run_info)


def run_compile(args: argparse.Namespace) -> int:
    from ..plugins import CompileOptions, compile_library

    options = CompileOptions(tensorrt_include=args.tensorrt_include, arch=args.arch, jobs=args.jobs)
    if args.output_dir:
        options.output_dir = args.output_dir
    path = compile_library(options)
    console.print(f"compiled {path}\nload it with rgbir.plugins.load(), trtexec --dynamicPlugins={path}, or "
          f"RGBIR_PLUGIN_LIBRARY={path}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from ..trt.registry import any_tensorrt_module, label, register_plugins, tensorrt_module

    trt = any_tensorrt_module() if args.tensorrt == "auto" else tensorrt_module(args.tensorrt)
    path = register_plugins(args.library, trt)
    console.print(f"library: {path} (in {label(trt)})")
    for creator in trt.get_plugin_registry().all_creators:
        if creator.plugin_namespace == "rgbir":
            fields = ", ".join(f"{f.name}:{f.type.name}" for f in creator.field_names)
            console.print(f"  {creator.plugin_namespace}::{creator.name} v{creator.plugin_version} ({fields})")
    return 0
