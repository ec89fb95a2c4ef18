"""``rgbir plugins``: compile the TensorRT plugin library, or show where it is and what it registers; compile the
CPU library ONNX Runtime runs the top-k attention with (done on first use otherwise)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import console


def add_parser(sub) -> None:
    p = sub.add_parser("plugins", help="compile or inspect the TensorRT plugin library and the CPU kernel",
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
    c = actions.add_parser("compile-cpu", help="compile the CPU attention kernel for ONNX Runtime (host C++ "
                                               "compiler; otherwise done on first use)")
    c.add_argument("--force", action="store_true", help="compile again even where a cached library exists")
    c.set_defaults(run=run_compile_cpu)
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


def run_compile_cpu(args: argparse.Namespace) -> int:
    from ..plugins.cpu import compile_cpu_library, compile_flags, find_compiler

    path = compile_cpu_library(force=args.force)
    console.print(f"compiled {path}\n({find_compiler()} {' '.join(compile_flags())}); ONNX Runtime runs the top-k "
                  "attention with it (rgbir run --attention kernel|function|auto)")
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
