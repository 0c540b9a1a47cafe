"""Every tunable number of the synthetic world, grouped by what it shapes.

The defaults mimic KITTI odometry (camera intrinsics, baseline, mounting) and
SemanticKITTI (grid), so that files written from them can be read by the real
dataset's code paths unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: KITTI odometry image size (width, height) the reference intrinsics belong to.
KITTI_IMAGE_SIZE = (1226, 370)


@dataclass(frozen=True)
class RigConfig:
    """Stereo rig and its mounting on the car (KITTI sequences 04-10 values)."""

    width: int = KITTI_IMAGE_SIZE[0]
    height: int = KITTI_IMAGE_SIZE[1]
    fx: float = 707.0912  # at the KITTI image size; scaled with the image
    fy: float = 707.0912
    cx: float = 601.8873
    cy: float = 183.1104
    baseline_m: float = 0.537  # image_2 <-> image_3 (and image_0 <-> image_1) distance
    cam2_offset_m: float = 0.06  # image_2 sits this far left of cam0, as in KITTI
    cam0_in_velo: tuple[float, float, float] = (0.27, 0.0, -0.08)  # cam0 centre, velodyne frame
    velo_height_m: float = 1.73  # velodyne above the road surface

    def scaled(self, height: int, width: int) -> "RigConfig":
        """Same rig at another image size: intrinsics scale with the image."""
        sx, sy = width / self.width, height / self.height
        return RigConfig(
            width=width,
            height=height,
            fx=self.fx * sx,
            fy=self.fy * sy,
            cx=self.cx * sx,
            cy=self.cy * sy,
            baseline_m=self.baseline_m,
            cam2_offset_m=self.cam2_offset_m,
            cam0_in_velo=self.cam0_in_velo,
            velo_height_m=self.velo_height_m,
        )


@dataclass(frozen=True)
class GridConfig:
    """SemanticKITTI voxel grid in the velodyne frame."""

    origin: tuple[float, float, float] = (0.0, -25.6, -2.0)
    voxel_size: float = 0.2
    shape: tuple[int, int, int] = (256, 256, 32)
    interior_invalid: bool = True  # voxels buried inside a solid are invalid (never observable)
    # Voxels no camera of the frame images are invalid. False labels the whole volume (only
    # buried voxels invalid), as SemanticKITTI's lidar-built ground truth does for the sides
    # of the grid a forward camera cannot see.
    view_invalid: bool = True
    # The voxels under a ground surface take its label, as SemanticKITTI's voxelizer labels
    # the voxels occluded beneath a labelled voxel from above; False leaves them empty (a
    # one-voxel-thick ground).
    fill_below_ground: bool = True


@dataclass(frozen=True)
class RoadConfig:
    """Cross-section of the street, from the road centre line outwards."""

    lane_width: float = 3.5
    lanes_per_direction: tuple[int, ...] = (1, 1, 2)  # drawn uniformly per sequence
    parking_width: float = 2.4
    parking_probability: float = 0.6  # per side of the street
    sidewalk_width: tuple[float, float] = (1.8, 3.5)
    terrain_width: tuple[float, float] = (1.5, 7.0)
    road_top: float = 0.0
    parking_top: float = 0.0
    sidewalk_top: float = 0.12  # curb height
    terrain_top: float = 0.06
    slab_depth: float = 0.5  # how deep ground slabs reach below their top (render only)
    voxel_layer: float = 0.02  # ground is labelled where [top - layer, top] meets a voxel
    outer_extent: float = 80.0  # terrain reaches this far from the centre line
    line_width: float = 0.15
    dash_length: float = 3.0
    dash_period: float = 9.0
    parking_bay_length: float = 6.0


@dataclass(frozen=True)
class ObjectConfig:
    """Sizes and densities of the things placed along the street."""

    building_lot: tuple[float, float] = (8.0, 24.0)  # facade length along the road
    building_gap: tuple[float, float] = (0.0, 7.0)
    building_depth: tuple[float, float] = (8.0, 16.0)
    building_height: tuple[float, float] = (5.0, 16.0)
    building_setback: tuple[float, float] = (0.0, 2.0)
    empty_lot_probability: float = 0.25
    brick_probability: float = 0.4  # else plaster
    lot_tree_depth: tuple[float, float] = (2.0, 6.0)  # trees in empty lots, behind the building line
    terrain_spot: tuple[float, float] = (0.25, 0.75)  # where across the terrain strip trees/bushes stand
    tree_spacing: tuple[float, float] = (6.0, 16.0)
    trunk_radius: tuple[float, float] = (0.12, 0.25)
    trunk_height: tuple[float, float] = (1.6, 3.0)
    crown_radius: tuple[float, float] = (1.2, 2.4)
    bush_probability: float = 0.5  # per tree slot, a bush next to it
    bush_radius: tuple[float, float] = (0.4, 0.9)
    hedge_probability: float = 0.35  # per building, a hedge in front of it
    hedge_height: tuple[float, float] = (0.6, 1.3)
    hedge_depth: float = 0.8
    fence_probability: float = 0.6  # per empty lot
    fence_height: tuple[float, float] = (1.0, 1.8)
    fence_thickness: float = 0.06
    pole_spacing: tuple[float, float] = (18.0, 35.0)
    pole_radius: tuple[float, float] = (0.08, 0.13)
    pole_height: tuple[float, float] = (5.0, 8.0)
    curb_clearance: float = 0.5  # poles and signs stand this far from the curb
    sign_spacing: tuple[float, float] = (25.0, 60.0)
    sign_pole_radius: float = 0.045
    sign_pole_height: float = 2.0
    sign_size: tuple[float, float] = (0.55, 0.8)
    sign_thickness: float = 0.04
    parking_slot: tuple[float, float] = (5.5, 7.5)
    parked_probability: float = 0.65
    traffic_gap: tuple[float, float] = (8.0, 45.0)  # cars in the other lanes
    traffic_speed_mps: float = 0.0  # the lane traffic drives along its lane (0: it stands); parked cars stay
    car_length: tuple[float, float] = (3.8, 4.9)
    car_width: tuple[float, float] = (1.65, 1.9)
    car_clearance: float = 0.18  # gap under the body, the road shows through
    car_body_height: tuple[float, float] = (0.75, 0.95)
    car_cabin_height: tuple[float, float] = (0.45, 0.6)
    truck_probability: float = 0.12
    truck_length: tuple[float, float] = (6.0, 9.5)
    truck_width: float = 2.45
    truck_height: tuple[float, float] = (3.0, 3.6)
    truck_cab_length: float = 2.0
    yaw_jitter: float = 0.05  # radians
    person_spacing: tuple[float, float] = (10.0, 40.0)
    person_radius: tuple[float, float] = (0.18, 0.25)
    person_height: tuple[float, float] = (1.55, 1.9)
    head_radius: float = 0.11
    density: float = 1.0  # multiplies every count; tests use fewer objects


@dataclass(frozen=True)
class TrajectoryConfig:
    """How the ego car moves: along its lane, ~1 m per frame at 10 Hz."""

    step_m: tuple[float, float] = (0.9, 1.1)  # per-sequence speed, metres per frame
    frame_period_s: float = 0.1
    wobble_amplitude_m: float = 0.3  # lateral drift inside the lane
    wobble_period_m: float = 90.0
    start_x: float = 0.0


@dataclass(frozen=True)
class RenderConfig:
    """Image formation: range, lighting, haze, noise, texture filtering."""

    max_range_m: float = 120.0  # nothing is rendered beyond; the depth PNG is 0 there
    near_m: float = 0.05
    haze_start: float = 0.45  # fraction of max range where haze starts to build up
    ambient: float = 0.45
    diffuse: float = 0.6
    sun_elevation: tuple[float, float] = (0.5, 1.0)  # radians, per sequence
    sensor_noise: float = 1.5  # std of additive noise, 8-bit levels
    aa_low: float = 1.0  # a texture octave fades out between aa_low and aa_high
    aa_high: float = 2.0  # ... pixel footprints per wavelength
    min_cosine: float = 0.05  # caps the grazing-angle footprint stretch
    sky_zenith: tuple[float, float, float] = (0.33, 0.52, 0.80)
    sky_horizon: tuple[float, float, float] = (0.78, 0.84, 0.90)


@dataclass(frozen=True)
class SynthConfig:
    """Everything one generator run needs."""

    seed: int = 0
    frames: int = 50
    voxel_every: int = 5  # SemanticKITTI labels every 5th frame
    sequences: tuple[str, ...] = ("00",)
    rig: RigConfig = field(default_factory=RigConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    road: RoadConfig = field(default_factory=RoadConfig)
    objects: ObjectConfig = field(default_factory=ObjectConfig)
    trajectory: TrajectoryConfig = field(default_factory=TrajectoryConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
