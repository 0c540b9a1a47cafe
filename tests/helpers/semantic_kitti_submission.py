"""The checks the SemanticKITTI benchmark's validator applies to a scene-completion
submission zip, written down from the semantic-kitti-api's `validate_submission.py
--task completion` and its help text (checks: folder structure, a label file for each
scan, the label count of each scan; invalid label values are not checked there, the
evaluation ignores them):

1. The bundle's file name ends in ``.zip``.
2. The zip has directory entries (names ending in ``/``) for ``sequences/`` and, for each
   test sequence 11..21, ``sequences/NN/`` and ``sequences/NN/predictions/``.
3. For every file in the dataset's ``sequences/NN/voxels/`` (the test set ships only the
   ``.bin`` input scans there) the zip holds ``sequences/NN/predictions/<stem>.label``,
   whose size in uint16 values equals the voxel count of the ``.bin`` (8 voxels a byte:
   256*256*32).
4. Nothing else: the files in the zip, other than an optional top-level
   ``description.txt``, are exactly those label files.

Written independently of the package's writer, so a test can hold its output against it.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

TEST_SEQUENCES = tuple(f"{s:02d}" for s in range(11, 22))
UINT16_BYTES = 2
OPTIONAL_FILES = ("description.txt",)


class SubmissionRejected(AssertionError):
    pass


def check_completion_zip(zip_path: str | Path, dataset: str | Path, sequences=TEST_SEQUENCES) -> list[str]:
    """Raise SubmissionRejected with the first broken rule; return the label members."""
    zip_path, dataset = Path(zip_path), Path(dataset)
    if not zip_path.name.endswith(".zip"):
        raise SubmissionRejected('competition bundle must end with ".zip"')
    with zipfile.ZipFile(zip_path) as zf:
        infos = zf.infolist()
    directories = {i.filename for i in infos if i.filename.endswith("/")}
    files = {i.filename: i for i in infos if not i.filename.endswith("/")}
    for name in OPTIONAL_FILES:
        files.pop(name, None)
    for needed in ["sequences/"] + [d for s in sequences for d in (f"sequences/{s}/", f"sequences/{s}/predictions/")]:
        if needed not in directories:
            raise SubmissionRejected(f'directory "{needed}" missing inside zip file')
    necessary = []
    for seq in sequences:
        voxel_dir = dataset / "sequences" / seq / "voxels"
        for voxel_file in sorted(voxel_dir.iterdir()):
            label = f"sequences/{seq}/predictions/{voxel_file.stem}.label"
            necessary.append(label)
            if label not in files:
                raise SubmissionRejected(f'"{label}" is missing inside zip')
            if voxel_file.suffix == ".bin":
                n_voxels = voxel_file.stat().st_size * 8
                n_labels = files[label].file_size / UINT16_BYTES
                if n_labels != n_voxels:
                    raise SubmissionRejected(f'label file "{label}" should have {n_voxels} labels, '
                                             f"but found {n_labels:g} labels")
    if len(necessary) != len(files):
        extra = sorted(set(files) - set(necessary))
        raise SubmissionRejected(f"zip contains unneeded predictions, e.g., {', '.join(extra[:10])}")
    return necessary
