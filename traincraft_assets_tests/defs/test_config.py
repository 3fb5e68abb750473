"""Config classes derived from core's settings: same fields, same defaults, same choices."""

import dataclasses
from typing import get_args

import dagster as dg
import pytest

from traincraft_assets.core.demo import DEMO_FOUNDATION, DEMO_FOUNDATION_OPTIONS
from traincraft_assets.core.labelling import LABELLERS
from traincraft_assets.core.training import TRAINERS
from traincraft_assets.core.training.mace import ModelShape, TrainSettings
from traincraft_assets.core.training.mace.settings import E0sMode, Strategy
from traincraft_assets.defs.data.labelling import LabelledFramesConfig
from traincraft_assets.defs.definitions import build_defs
from traincraft_assets.defs.foundation.assets import FoundationConfig
from traincraft_assets.defs.training.assets import FinetuneConfig


def _leaf_defaults(instance) -> dict:
    out = {}
    for f in dataclasses.fields(instance):
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(value):
            out.update(_leaf_defaults(value))
        else:
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def test_finetune_config_has_every_training_setting_with_its_default():
    fields = FinetuneConfig.model_fields
    assert set(fields) == {"trainer", *_leaf_defaults(TrainSettings())}
    for name, default in _leaf_defaults(TrainSettings()).items():
        assert fields[name].default == default, name
    assert (
        fields["lr"].description
        == dataclasses.fields(TrainSettings)[[f.name for f in dataclasses.fields(TrainSettings)].index("lr")].metadata[
            "help"
        ]
    )


def _choices(asset: str, field: str) -> set:
    node = build_defs().resolve_asset_graph().get(dg.AssetKey(asset)).assets_def.node_def  # an op or a graph
    choice = node.config_schema.config_type.fields[field].config_type
    return {value.config_value for value in choice.enum_values}


def test_config_choices_come_from_core():
    """The launchpad offers exactly the choices core defines (and a new one appears there
    without editing defs)."""
    assert _choices("finetuned_model", "strategy") == set(get_args(Strategy))
    assert _choices("finetuned_model", "e0s") == set(get_args(E0sMode))
    assert _choices("finetuned_model", "trainer") == set(TRAINERS)
    assert _choices("labelled_frames", "labeller") == set(LABELLERS)
    assert LabelledFramesConfig().labeller == "prelabelled"


def test_an_unknown_choice_is_refused_before_the_run():
    job = build_defs().resolve_job_def("finetune")
    with pytest.raises(dg.DagsterInvalidConfigError, match="sideways"):
        dg.validate_run_config(job, {"ops": {"finetuned_model": {"config": {"strategy": "sideways"}}}})


def test_foundation_config_exposes_the_scratch_options_with_the_demo_foundation_defaults():
    fields = FoundationConfig.model_fields
    # heads too: a foundation pre-trained on molecules has no stress to fit
    assert set(fields) == {"source", "path", "name", "heads", *DEMO_FOUNDATION_OPTIONS}
    demo = _leaf_defaults(DEMO_FOUNDATION)
    assert fields["heads"].default == list(DEMO_FOUNDATION.heads)
    for name in DEMO_FOUNDATION_OPTIONS:
        assert fields[name].default == demo[name], name
    settings = FoundationConfig(num_channels=8, max_num_epochs=2).to_settings()
    assert settings.scratch.shape == ModelShape(num_channels=8, max_L=0, r_max=5.0, num_interactions=2, correlation=2)
    # what the config does not expose stays as the demo declares it
    assert (settings.scratch.max_num_epochs, settings.scratch.e0s, settings.scratch.heads) == (
        2,
        "average",
        ("energy", "forces", "stress"),
    )


def test_finetune_config_maps_every_field_to_the_training_settings():
    config = FinetuneConfig(
        strategy="naive",
        freeze=6,
        lr=2e-3,
        heads=["energy", "forces", "stress"],
        e0s="dict",
        e0s_dict={"Cu": -0.1},
        ema_decay=0.99,
        stress_weight=5.0,
        device="cpu",
        dtype="float32",
        num_channels=16,
        max_L=0,
        extra={"clip_grad": "5"},
    )
    s = config.to_settings()
    assert (s.strategy, s.freeze, s.lr, s.heads, s.e0s, s.e0s_dict) == (
        "naive",
        6,
        2e-3,
        ("energy", "forces", "stress"),
        "dict",
        {"Cu": -0.1},
    )
    assert (s.ema_decay, s.stress_weight, s.device, s.dtype) == (0.99, 5.0, "cpu", "float32")
    assert (s.shape.num_channels, s.shape.max_L, s.extra) == (16, 0, {"clip_grad": "5"})
    defaults = FinetuneConfig().to_settings()
    assert (defaults.weight_decay, defaults.ema_decay, defaults.energy_weight, defaults.forces_weight) == (
        0.0,
        0.995,
        10.0,
        10.0,
    )
    assert (defaults.strategy, defaults.e0s, defaults.learning_rate) == ("multihead", "foundation", 1e-4)
