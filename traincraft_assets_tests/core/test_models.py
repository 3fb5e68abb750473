"""core.models: loading MACE model files, describing them, naming their heads."""

from types import SimpleNamespace

import pytest
import torch
from ase import Atoms

from traincraft_assets.core import demo
from traincraft_assets.core.models import (
    REPLAY_HEAD,
    TARGET_HEAD,
    describe_file,
    describe_model,
    known_frames,
    load_model,
    model_head,
)

SHIPPED_MODEL = demo.SHIPPED_FOUNDATION_DIR / "foundation.model"


def test_the_fine_tuned_head_is_the_first_that_is_not_the_replay_head():
    assert model_head([TARGET_HEAD]) == TARGET_HEAD
    assert model_head([TARGET_HEAD, REPLAY_HEAD]) == TARGET_HEAD
    assert model_head([REPLAY_HEAD, "dft"]) == "dft"
    assert model_head([REPLAY_HEAD]) == REPLAY_HEAD  # nothing else to deploy


def test_known_frames_drops_frames_with_elements_the_model_lacks():
    model = SimpleNamespace(atomic_numbers=[29, 28])  # Cu, Ni
    frames = [Atoms("Cu2"), Atoms("CuNi"), Atoms("CuAl"), Atoms("Zr")]
    assert [a.get_chemical_formula() for a in known_frames(frames, model)] == ["Cu2", "CuNi"]


def test_a_model_loaded_for_inference_keeps_no_gradients_and_an_export_keeps_the_file_as_written():
    assert not any(p.requires_grad for p in load_model(SHIPPED_MODEL).parameters())
    assert all(p.requires_grad for p in load_model(SHIPPED_MODEL, inference=False).parameters())


def test_the_description_is_read_from_the_file_itself():
    info = describe_model(SHIPPED_MODEL)
    assert info["model_class"] == "ScaleShiftMACE" and info["heads"] == [TARGET_HEAD] and info["head"] == TARGET_HEAD
    assert info["dtype"] == "float32" and info["r_max"] == demo.DEMO_FOUNDATION.shape.r_max
    assert set(info["elements"]) == set(demo.PRETRAINING_METALS)
    assert set(info["e0s"]) == {str(z) for z in info["atomic_numbers"]}
    assert describe_file(SHIPPED_MODEL) == info


@pytest.mark.parametrize(
    ("write", "why"),
    [
        (lambda path: path.write_text("not a model"), "torch could not load it (UnpicklingError)"),
        (lambda path: torch.save({"weights": torch.zeros(2)}, path), "a dict without"),
    ],
    ids=["text file", "state dict"],
)
def test_a_file_that_is_not_a_mace_model_is_refused_naming_it(tmp_path, write, why):
    path = tmp_path / "foundation.model"
    write(path)
    with pytest.raises(ValueError) as info:
        describe_model(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not a MACE model") and why in message
    assert "a checkpoint (.pt) or a state_dict will not do" in message
