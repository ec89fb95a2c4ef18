"""``rgbir calibrate``: IR→RGB registration (homography or affine) from point correspondences in a YAML file."""

from __future__ import annotations

import argparse

from .common import console


def add_parser(sub) -> None:
    p = sub.add_parser("calibrate", help="estimate IR→RGB registration from matched points",
                       description=__doc__.replace("``", "") + " The file holds ir_size: [W, H], rgb_size: [W, H], "
                       "optional kind: homography|affine, and pairs: [[[x_ir, y_ir], [x_rgb, y_rgb]], ...].")
    p.add_argument("points", help="point correspondences YAML")
    p.add_argument("-o", "--output", default="registration.yaml", help="where to write the registration")
    p.add_argument("--kind", choices=("homography", "affine"), help="override the file's kind")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..paths import PathPlan
    from ..preflight import readable_file, writable_file
    from ..runtime.registration import estimate, load_points

    writable_file(args.output, "registration file")
    PathPlan().reads("the points file", args.points).writes("-o", args.output).check()
    ir, rgb, ir_size, rgb_size, kind = load_points(readable_file(args.points, "points file"))
    reg = estimate(ir, rgb, ir_size, rgb_size, args.kind or kind)
    reg.save(args.output)
    console.print(f"{reg.kind} from {len(ir)} point pairs: RMS reprojection error {reg.reprojection_error:.3f} px "
          f"(RGB pixels); wrote {args.output}")
    return 0
