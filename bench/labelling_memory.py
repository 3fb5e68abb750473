"""Peak memory of labelling a batch and merging batches, as a ratio to the batch file's size.

Each measurement runs in a fresh process and reports its peak resident memory above that of a
process that only imported the same modules, side by side with reading the whole file at once
(what labelling did before it streamed). Usage: python bench/labelling_memory.py [FILE_MB]
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

WAYS = {
    "imports only": "pass",
    "read the whole file (ase.io.read)": "frames = ase.io.read(src, ':')",
    "label_batch (prelabelled, streamed)": "label_batch(Path(src), 'b', 'prelabelled', LabelOptions(), Path(out) / 'l.xyz')",
    "merge two batches (streamed)": (
        "with frame_writer(Path(out) / 'd.xyz') as write:\n"
        "    merge_batches([iter_frames(src), iter_frames(src2)], write)"
    ),
}
PRELUDE = (
    "import sys, resource\nfrom pathlib import Path\nimport ase.io\n"
    "from traincraft_assets.core.dataset import merge_batches\n"
    "from traincraft_assets.core.frames import frame_writer, iter_frames\n"
    "from traincraft_assets.core.labelling import LabelOptions, label_batch\n"
    "src, src2, out = sys.argv[1:4]\n"
)
EPILOGUE = "\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"  # KiB on Linux


def make_batch(path: Path, megabytes: float, seed: int) -> int:
    """EMT-labelled rattled Cu supercells until the file reaches `megabytes`; returns frames."""
    import numpy as np
    from ase.build import bulk

    from traincraft_assets.core.frames import frame_writer
    from traincraft_assets.core.labelling import LabelOptions, emt

    template = emt([bulk("Cu", "fcc", cubic=True).repeat((3, 3, 3))], LabelOptions())[0]
    rng = np.random.default_rng(seed)
    n = 0
    with frame_writer(path) as write:
        while path.stat().st_size < megabytes * 1e6:
            chunk = []
            for _ in range(50):
                atoms = template.copy()
                atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)  # distinct structures
                chunk.append(atoms)
            write(chunk)
            n += len(chunk)
    return n


def peak_kib(code: str, *args: str) -> int:
    run = subprocess.run([sys.executable, "-c", PRELUDE + code + EPILOGUE, *args], capture_output=True, text=True, check=True)
    return int(run.stdout.split()[-1])


def main(megabytes: float = 200.0) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src, src2 = Path(tmp) / "batch.xyz", Path(tmp) / "batch2.xyz"
        n = make_batch(src, megabytes, 0)
        make_batch(src2, megabytes, 1)
        size_mib = src.stat().st_size / 2**20
        base = peak_kib(WAYS["imports only"], str(src), str(src2), tmp)
        rows = {}
        for name, code in WAYS.items():
            if name != "imports only":
                rows[name] = (peak_kib(code, str(src), str(src2), tmp) - base) / 1024
    print(f"batch file: {size_mib:.0f} MiB, {n} frames of 108 atoms; peak memory above imports:")
    for name, mib in rows.items():
        print(f"  {name:40s} {mib:8.0f} MiB  = {mib / size_mib:5.2f} x the file")
    print(json.dumps({"file_mib": size_mib, **{k: v / size_mib for k, v in rows.items()}}))


if __name__ == "__main__":
    main(*(float(a) for a in sys.argv[1:2]))
