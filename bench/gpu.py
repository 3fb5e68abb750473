"""Row 8, on a machine with CUDA: rows 1 and 2 on the GPU, and the GPU's utilisation while our
step trains (sampled by nvidia-smi). Row 1's ratio on the GPU is the training throughput of our
step against raw MACE on the same GPU (goal >= 0.95x, the inverse of <= 1.05x wall time)."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

from bench import evaluation, orchestration
from bench.common import Row, not_measured


class UtilisationSampler:
    """GPU utilisation (%) every second while in the `with` block."""

    def __init__(self):
        self.samples: list[float] = []
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.wait(1.0):
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
            )
            if out.returncode == 0:
                self.samples.append(float(out.stdout.split()[0]))

    def __enter__(self) -> UtilisationSampler:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def measure(root: Path, mode: str, repeats: int) -> list[Row]:
    import torch

    if not torch.cuda.is_available():
        return [not_measured("8", "GPU: rows 1 and 2 on CUDA, training throughput, utilisation", "no GPU")]
    name = torch.cuda.get_device_name(0)
    with UtilisationSampler() as sampler:
        (training,) = orchestration.measure(root, mode, repeats, device="cuda", label="8")
    throughput = 1 / training.ratio
    training.what = f"GPU {name}: our step vs raw MACE, training throughput"
    training.ratio, training.goal, training.met = throughput, ">= 0.95", throughput >= 0.95
    utilisation = sum(sampler.samples) / len(sampler.samples) if sampler.samples else float("nan")
    training.note += f"; mean GPU utilisation {utilisation:.0f}% (whole row)"
    training.details["gpu"], training.details["utilisation_samples"] = name, sampler.samples
    (evaluating,) = evaluation.measure(mode, repeats, device="cuda", label="8")
    evaluating.what = f"GPU {name}: " + evaluating.what
    return [training, evaluating]
