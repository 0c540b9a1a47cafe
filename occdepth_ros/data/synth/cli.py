"""occdepth-synth: write a synthetic stereo street dataset in the SemanticKITTI layout.

Same seed and arguments give byte-identical files. Example:

    occdepth-synth --out /tmp/synth --sequences 00 01 --frames 100 --seed 3
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from tqdm import tqdm

from .config import SynthConfig
from .writer import generate


def build_parser() -> argparse.ArgumentParser:
    defaults = SynthConfig()
    p = argparse.ArgumentParser(prog="occdepth-synth", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="dataset root; sequences/<seq>/ is written below it")
    p.add_argument("--sequences", nargs="+", default=list(defaults.sequences), help="sequence names")
    p.add_argument("--frames", type=int, default=defaults.frames, help="frames per sequence")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--voxel-every", type=int, default=defaults.voxel_every,
                   help="write voxel labels every K-th frame (SemanticKITTI: 5); 0 = never")
    p.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"),
                   default=(defaults.rig.height, defaults.rig.width),
                   help="image height and width; the intrinsics scale with it")
    p.add_argument("--density", type=float, default=defaults.objects.density,
                   help="scales how many objects line the street (1 = default)")
    p.add_argument("--whole-volume", action="store_true",
                   help="label the whole grid: only buried voxels are invalid, the sides outside the "
                        "cameras' view stay valid (SemanticKITTI's lidar-built ground truth scores them)")
    p.add_argument("--thin-ground", action="store_true",
                   help="label only the ground's surface voxels and leave the voxels below it empty "
                        "(by default they take the surface's label, as SemanticKITTI's voxelizer does)")
    p.add_argument("--traffic-speed", type=float, default=defaults.objects.traffic_speed_mps, metavar="M_S",
                   help="the traffic in the other lanes drives along its lane at this speed, m/s "
                        "(0 = it stands; parked cars always do)")
    p.add_argument("--workers", type=int, default=1, help="processes rendering frames in parallel")
    return p


def config_from_args(args: argparse.Namespace) -> SynthConfig:
    base = SynthConfig()
    if args.frames < 1:
        raise SystemExit("--frames must be >= 1")
    if args.voxel_every < 0:
        raise SystemExit("--voxel-every must be >= 0")
    if args.density <= 0:
        raise SystemExit("--density must be > 0")
    if not args.traffic_speed >= 0:
        raise SystemExit("--traffic-speed must be >= 0")
    height, width = args.image_size
    if height < 2 or width < 2:
        raise SystemExit("--image-size must be at least 2 x 2")
    return replace(
        base,
        seed=args.seed,
        frames=args.frames,
        voxel_every=args.voxel_every,
        sequences=tuple(args.sequences),
        rig=base.rig.scaled(height, width),
        grid=replace(base.grid, view_invalid=not args.whole_volume, fill_below_ground=not args.thin_ground),
        objects=replace(base.objects, density=args.density, traffic_speed_mps=args.traffic_speed),
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = config_from_args(args)
    total = cfg.frames * len(cfg.sequences)
    start = time.perf_counter()
    with tqdm(total=total, unit="frame", desc="occdepth-synth") as bar:
        dirs = generate(cfg, args.out, on_frame=bar.update, workers=args.workers)
    elapsed = time.perf_counter() - start
    print(f"wrote {total} frames to {', '.join(str(d) for d in dirs)} "
          f"in {elapsed:.1f} s ({elapsed / total:.3f} s/frame)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
