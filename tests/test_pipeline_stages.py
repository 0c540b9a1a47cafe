"""The pipelined node stages (node/pipeline_stages): the same outputs as the sequential
path, byte for byte, on real sensor_msgs images of a generated sequence through the
shipped model; the latest set wins while the network is busy (the one in flight and the
newest are published, the sets between are counted as busy drops); a bad set is
rejected with its reason and the stages go on."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from sensor_msgs.msg import Image

from occdepth_ros.checkpoint.io import load_model
from occdepth_ros.classes import load_class_set
from occdepth_ros.data.images import read_rgb
from occdepth_ros.data.kitti_odometry import KittiSequence
from occdepth_ros.data.synth.cli import main as synth_main
from occdepth_ros.inference import InputError, StereoInference
from occdepth_ros.node.latest_slot import LatestSlot
from occdepth_ros.node.params import NodeParams
from occdepth_ros.node.pipeline_stages import FramePipeline, host_threads_for
from occdepth_ros.node.processor import OUTPUTS, FrameOutputs, FrameProcessor
from occdepth_ros.resources import default_model_path

TIMEOUT_S = 120.0


def image_msg(rgb: np.ndarray, stamp_ns: int) -> Image:
    msg = Image()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = "camera"
    msg.height, msg.width = rgb.shape[:2]
    msg.encoding, msg.step = "rgb8", rgb.shape[1] * 3
    msg.data = rgb.tobytes()
    return msg


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> tuple[Path, list[tuple[np.ndarray, np.ndarray]]]:
    root = tmp_path_factory.mktemp("seq")
    assert synth_main(["--out", str(root), "--sequences", "00", "--frames", "3", "--seed", "9",
                       "--voxel-every", "0", "--image-size", "96", "320"]) == 0
    seq = KittiSequence(root, "00")
    return seq.path / "calib.txt", [tuple(read_rgb(p) for p in seq.image_paths(f)) for f in seq.frame_ids()]


@pytest.fixture(scope="module")
def model():
    return load_model(default_model_path())


class RecordingProcessor(FrameProcessor):
    """Records the stamps it prepared; its network waits on ``gate`` (set = run)."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.prepared: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.in_network = threading.Event()

    def prepare(self, msgs):
        frame = super().prepare(msgs)
        self.prepared.append(frame.stamp_ns)
        return frame

    def infer(self, frame):
        self.in_network.set()
        assert self.gate.wait(TIMEOUT_S)
        return super().infer(frame)


def make_processor(model, calib: Path) -> RecordingProcessor:
    params = NodeParams(calib_file=str(calib), publish_confidence=True)
    return RecordingProcessor(StereoInference(model), params, load_class_set(model.cfg.class_set))


class Collector:
    def __init__(self) -> None:
        self.published: list[FrameOutputs] = []
        self.rejected: list[BaseException] = []
        self.drops: list[str] = []

    def wait(self, n: int, what: str = "published") -> None:
        end = time.monotonic() + TIMEOUT_S
        while len(getattr(self, what)) < n and time.monotonic() < end:
            time.sleep(0.01)
        assert len(getattr(self, what)) >= n, f"{what}: {len(getattr(self, what))} of {n}"


def start(processor, source: LatestSlot, out: Collector) -> FramePipeline:
    return FramePipeline(processor, source, out.published.append, out.rejected.append, out.drops.append,
                         lambda: OUTPUTS).start()


def assert_same(a: FrameOutputs, b: FrameOutputs) -> None:
    assert a.stamp_ns == b.stamp_ns
    for name in ("labels", "confidence", "seen"):
        assert np.array_equal(getattr(a.prediction, name), getattr(b.prediction, name)), name
    assert a.cloud.points.tobytes() == b.cloud.points.tobytes() and a.cloud.fields == b.cloud.fields
    assert np.array_equal(a.voxels.centres, b.voxels.centres) and np.array_equal(a.voxels.labels, b.voxels.labels)
    assert dataclasses.astuple(a.bev)[1:] == dataclasses.astuple(b.bev)[1:]
    assert a.bev.data.tobytes() == b.bev.data.tobytes()


def test_pipelined_outputs_equal_the_sequential_path(model, frames) -> None:
    calib, pairs = frames
    msgs = [(image_msg(l, 10**9 * (i + 1)), image_msg(r, 10**9 * (i + 1))) for i, (l, r) in enumerate(pairs)]
    sequential = [make_processor(model, calib).process(m, OUTPUTS) for m in msgs]
    assert len({s.prediction.labels.tobytes() for s in sequential}) == len(msgs)  # the frames differ
    source: LatestSlot[tuple] = LatestSlot()
    out = Collector()
    pipeline = start(make_processor(model, calib), source, out)
    try:
        for i, m in enumerate(msgs):
            source.put(m)
            out.wait(i + 1)
    finally:
        pipeline.close()
    assert not out.rejected and not out.drops
    for a, b in zip(sequential, out.published):
        assert_same(a, b)
        assert b.processing_s > 0


def test_latest_set_wins_while_the_network_is_busy(model, frames) -> None:
    """Frame 1 is held in the network. The next set is prepared at once (nothing is timed
    yet, so the network's request is due at once); the sets after it are never prepared
    while no request is pending: each replaces the one before in the input slot (the
    node counts those as busy drops), and the newest is prepared once the network asks."""
    calib, pairs = frames
    left, right = pairs[0]
    stamps = [10**9 * (i + 1) for i in range(5)]
    processor = make_processor(model, calib)
    processor.gate.clear()
    source: LatestSlot[tuple] = LatestSlot()
    out = Collector()
    pipeline = start(processor, source, out)

    def put(s: int) -> None:
        source.put((image_msg(left, s), image_msg(right, s)))

    def wait_prepared(s: int) -> None:
        end = time.monotonic() + TIMEOUT_S
        while s not in processor.prepared and time.monotonic() < end:
            time.sleep(0.005)
        assert s in processor.prepared, processor.prepared

    try:
        put(stamps[0])
        assert processor.in_network.wait(TIMEOUT_S)  # frame 1 is in the network, held there
        put(stamps[1])
        wait_prepared(stamps[1])
        for s in stamps[2:]:
            put(s)
        time.sleep(0.5)  # no request is pending: nothing more is prepared
        assert processor.prepared == stamps[:2]
        assert source.replaced == 2
        processor.gate.set()
        out.wait(3)
        time.sleep(0.5)  # nothing else comes
    finally:
        pipeline.close()
    assert processor.prepared == [stamps[0], stamps[1], stamps[-1]]
    assert [r.stamp_ns for r in out.published] == [stamps[0], stamps[1], stamps[-1]]
    assert out.drops == [] and pipeline.ready.replaced == 0


def test_bad_set_is_rejected_and_the_stages_go_on(model, frames) -> None:
    calib, pairs = frames
    left, right = pairs[0]
    source: LatestSlot[tuple] = LatestSlot()
    out = Collector()
    pipeline = start(make_processor(model, calib), source, out)
    try:
        source.put((image_msg(left, 1), image_msg(right[:, :-8].copy(), 1)))  # sizes differ
        out.wait(1, "rejected")
        source.put((image_msg(left, 2), image_msg(right, 2)))
        out.wait(1)
    finally:
        pipeline.close()
    assert isinstance(out.rejected[0], InputError) and "right is" in str(out.rejected[0])
    assert [r.stamp_ns for r in out.published] == [2]


def test_host_threads_leave_a_torch_network_alone() -> None:
    assert host_threads_for("onnxruntime", 1) == 1
    assert host_threads_for("tensorrt", 2) == 2
    assert host_threads_for("torch", 1) is None
    assert host_threads_for("onnxruntime", 0) is None
