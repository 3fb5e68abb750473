"""The multi-fidelity comparison: water clusters that never overlap, labels at two levels with
their cost, cached by content; each arm trains on what it says; findings follow the numbers,
either way; `traincraft compare --fidelity --quick` end to end (real xTB, PySCF, MACE)."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from traincraft_assets import cli
from traincraft_assets.core import fidelity
from traincraft_assets.core.fidelity import (
    CHEAP,
    COST_KEY,
    ENERGIES_FINETUNE,
    EXPENSIVE,
    EXPENSIVE_ONLY,
    MIN_DISTANCE,
    MULTIHEAD,
    PRETRAIN_FINETUNE,
    FidelitySettings,
    Plan,
    findings,
    label_options,
    labelled,
    water_clusters,
)
from traincraft_assets.core.frames import CONFIG_TYPE_KEY, fingerprint, level_of, read_frames
from traincraft_assets.core.labelling import level_of_theory
from traincraft_assets.core.models import TARGET_HEAD, load_model, model_heads
from traincraft_assets.core.qm import QMOptions
from traincraft_assets.core.training.mace import TrainSettings
from traincraft_assets.core.training.mace.command import requested_e0s


def test_water_clusters_are_seeded_and_no_two_molecules_overlap():
    clusters = water_clusters(60, seed=4)
    assert [fingerprint(a) for a in clusters] == [fingerprint(a) for a in water_clusters(60, seed=4)]
    assert [fingerprint(a) for a in clusters] != [fingerprint(a) for a in water_clusters(60, seed=5)]
    assert {a.info[CONFIG_TYPE_KEY] for a in clusters} == {"water_1", "water_2", "water_3"}
    for atoms in clusters:
        assert atoms.get_chemical_symbols() == ["O", "H", "H"] * (len(atoms) // 3)
        assert not atoms.pbc.any()
        molecule = np.arange(len(atoms)) // 3  # each water is O, H, H
        distances = atoms.get_all_distances()
        between = distances[molecule[:, None] != molecule[None]]
        assert len(atoms) == 3 or between.min() >= MIN_DISTANCE
        for o in range(0, len(atoms), 3):
            assert 0.8 < distances[o, o + 1] < 1.15 and 0.8 < distances[o, o + 2] < 1.15


def test_sizes_that_cannot_nest_are_refused_saying_what_to_change():
    with pytest.raises(ValueError, match="expensive_sizes \\[5, 50\\] go beyond the training pool of 40"):
        fidelity.structures(FidelitySettings(cheap_sizes=(20, 40), expensive_sizes=(5, 50)))
    with pytest.raises(ValueError, match="expected one or more frame counts"):
        FidelitySettings(expensive_sizes=())
    with pytest.raises(ValueError, match="batch_size 5 is more than the fewest expensive frames \\(3\\)"):
        FidelitySettings(expensive_sizes=(3, 10))


def test_labels_carry_their_level_and_cost_and_are_not_computed_twice(tmp_path):
    frames = water_clusters(3, seed=1, max_waters=2)
    options = label_options(replace(FidelitySettings(), method="HF", basis="sto-3g"))
    said = []
    for labeller in (CHEAP, EXPENSIVE):
        first = labelled(frames, labeller, options[labeller], tmp_path, 1, said.append)
        level = level_of_theory(labeller, options[labeller])
        assert [level_of(a) for a in first] == [level] * 3
        assert all(a.info[COST_KEY] > 0 for a in first)
        again = labelled(frames, labeller, options[labeller], tmp_path, 1, said.append)
        assert said[-1].endswith("labelled earlier (" + str(next(tmp_path.glob(f"{labeller}-*.xyz"))) + ")")
        # the costs measured the first time, read back: nothing was labelled again
        assert [a.info[COST_KEY] for a in again] == pytest.approx([a.info[COST_KEY] for a in first])
    other = replace(options[EXPENSIVE], qm=QMOptions(method="HF", basis="6-31g"))
    labelled(frames, EXPENSIVE, other, tmp_path, 1, said.append)
    assert len(list(tmp_path.glob(f"{EXPENSIVE}-*.xyz"))) == 2  # another level: labelled anew
    assert "CPU-s" in said[-1]


def test_the_plan_trains_every_arm_on_one_budget():
    plan = Plan.of(FidelitySettings(cheap_sizes=(150, 50, 400), expensive_sizes=(20, 5, 10)))
    assert plan.pretrainings() == [(True, 50), (True, 150), (True, 400), (False, 400)]
    models = plan.models()
    assert [m for m in models if m[0] in (EXPENSIVE_ONLY, MULTIHEAD)] == [
        (EXPENSIVE_ONLY, 0, 5),
        (EXPENSIVE_ONLY, 0, 10),
        (EXPENSIVE_ONLY, 0, 20),
        (MULTIHEAD, 400, 5),
        (MULTIHEAD, 400, 10),
        (MULTIHEAD, 400, 20),
    ]
    assert [m for m in models if m[0] == PRETRAIN_FINETUNE] == [
        (PRETRAIN_FINETUNE, 400, 5),
        (PRETRAIN_FINETUNE, 400, 10),
        (PRETRAIN_FINETUNE, 400, 20),
        (PRETRAIN_FINETUNE, 50, 5),
        (PRETRAIN_FINETUNE, 150, 5),
    ]
    assert [m for m in models if m[0] == ENERGIES_FINETUNE] == [(ENERGIES_FINETUNE, 400, 5)]
    levels = {CHEAP: "cheap", EXPENSIVE: "expensive"}
    base = FidelitySettings().training
    trained = [fidelity.arm_settings(arm, base, levels) for arm in fidelity.ARMS]
    trained += [fidelity.pretrain_settings(base, levels, forces) for forces in (True, False)]
    for settings in trained:
        assert (settings.max_num_epochs, settings.batch_size, settings.shape) == (
            base.max_num_epochs,
            base.batch_size,
            base.shape,
        )
    assert [s.forces_weight for s in trained[-2:]] == [base.forces_weight, 0.0]


def _rows(**errors):
    """Hand-made rows: arm -> [(cheap frames, expensive frames, test F, test E, labelling CPU-s)]."""
    return [
        {
            "arm": arm,
            "n_cheap": n_cheap,
            "n_expensive": n_expensive,
            "test_rmse_f_mev_per_a": f,
            "test_rmse_e_mev_per_atom": e,
            "label_cpu_s": cost,
        }
        for arm, points in errors.items()
        for n_cheap, n_expensive, f, e, cost in points
    ]


def _pretrained(*points):
    return [
        {"forces": forces, "n_cheap": n, "cheap_valid_rmse_f_mev_per_a": f, "cheap_valid_rmse_e_mev_per_atom": 1.0}
        for forces, n, f in points
    ]


def test_findings_say_not_better_when_the_numbers_say_so():
    rows = _rows(
        expensive_only=[(0, 5, 100.0, 10.0, 5.0), (0, 10, 80.0, 8.0, 10.0)],
        pretrain_finetune=[(400, 5, 120.0, 12.0, 6.0), (400, 10, 70.0, 9.0, 11.0), (50, 5, 130.0, 12.0, 5.1)],
        pretrain_energies_finetune=[(400, 5, 110.0, 9.0, 6.0)],
        multihead=[(400, 5, 60.0, 9.0, 6.0), (400, 10, 50.0, 9.0, 11.0)],
    )
    found = findings(rows, _pretrained((True, 50, 30.0), (True, 400, 20.0), (False, 400, 90.0)), 500.0)
    assert found["a"].startswith("on forces holds at 1 of 2 sizes, on energies does not hold")
    assert "120.0 against 100.0 meV/Å (not better)" in found["a"] and "70.0 against 80.0 meV/Å (better)" in found["a"]
    assert found["b"].startswith("not tested: two points lie on any line")
    assert found["c"].startswith("does not hold") and "energies only 110.0" in found["c"]
    assert found["d"].startswith("does not hold: multihead is less accurate on forces than pretrain_finetune at 0 of 2")
    assert "the cheap labels stand in for expensive ones" in found["d"]
    assert "500x a cheap one" in found["e"] and "the study assumes 100x" in found["e"]
    # the cheapest labels reaching expensive_only's 80.0 meV/Å at 10 frames: multihead at 5
    assert "multihead's with 5 expensive and 400 cheap frames (60.0 meV/Å, 6.0 CPU-s: 0.60x the cost)" in found["e"]


def test_findings_say_holds_when_the_numbers_say_so():
    rows = _rows(
        expensive_only=[(0, 5, 300.0, 30.0, 5.0), (0, 10, 200.0, 20.0, 10.0)],
        pretrain_finetune=[
            (400, 5, 100.0, 10.0, 6.0),
            (400, 10, 80.0, 8.0, 11.0),
            (50, 5, 200.0, 20.0, 5.1),
            (150, 5, 141.0, 14.0, 5.3),
        ],
        pretrain_energies_finetune=[(400, 5, 280.0, 12.0, 6.0)],
        multihead=[(400, 5, 110.0, 9.0, 6.0), (400, 10, 400.0, 9.0, 11.0)],
    )
    pretrained = _pretrained((True, 50, 40.0), (True, 150, 20.0), (True, 400, 10.0), (False, 400, 90.0))
    found = findings(rows, pretrained, 500.0)
    assert found["a"].startswith("on forces holds, on energies holds")
    # the fine-tuned error falls by a factor of 1.41 each time the pre-trained error halves: slope 0.5
    assert found["b"].startswith("holds: log-log slope 0.50, correlation 1.00 over 3 amounts")
    assert found["c"].startswith("holds") and "3.00x with forces, 1.07x energies only" in found["c"]
    assert found["d"].startswith("holds only in part") and "1.10x at 5, 5.00x at 10" in found["d"]
    assert "better than expensive_only on forces at 1 of 2 sizes" in found["d"]


def test_a_run_without_a_model_as_good_as_expensive_only_says_so():
    rows = _rows(expensive_only=[(0, 5, 50.0, 5.0, 5.0)], multihead=[(400, 5, 60.0, 9.0, 6.0)])
    found = findings(rows, [], 500.0)
    assert "no model reached expensive_only's force error with all 5 expensive frames" in found["e"]
    assert found["a"].startswith("not measured") and found["b"].startswith("not measured")


def test_the_table_is_the_rows():
    rows = _rows(multihead=[(400, 5, 60.04, 9.0, 6.0)], expensive_only=[(0, 5, 50.0, 5.0, 5.0)])
    lines = fidelity.table(rows).splitlines()
    assert lines[2:] == ["| expensive_only | 5 | 0 | 5.0 | 50.0 | 5.0 |", "| multihead | 5 | 400 | 9.0 | 60.0 | 6.0 |"]


@pytest.mark.integration
def test_compare_fidelity_quick_end_to_end(tmp_path, capsys):
    """`traincraft compare --fidelity --quick` through the CLI's own function: labels, every arm
    trained for real, the files written; then what each arm was trained on, from its run."""
    data = tmp_path / "fidelity"
    assert cli.main(["compare", "--fidelity", "--quick", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert "pre-training 1/3: 40 cheap frames, energies and forces" in out
    assert "model 8/8: multihead, 8 expensive frames, 80 cheap" in out
    results = json.loads((data / "fidelity.json").read_text())
    assert (data / "fidelity.png").stat().st_size > 10_000
    assert set(results["findings"]) == {"a", "b", "c", "d", "e"}
    assert "| pretrain_finetune | 4 | 80 |" in (data / "fidelity.md").read_text()
    assert len(results["rows"]) == 8 and all(np.isfinite(r["test_rmse_f_mev_per_a"]) for r in results["rows"])
    cheap, expensive = results["levels"][CHEAP], results["levels"][EXPENSIVE]
    assert cheap.startswith("xtb:GFN2-xTB") and expensive.startswith("pyscf:PBE/6-31g")
    runs = data / "runs"

    def levels(run, side="train"):
        return [level_of(a) for a in read_frames(runs / run / f"{side}.xyz")]

    # expensive_only never sees a cheap frame
    assert levels("expensive_only-c0-e4") == [expensive] * 4 and set(levels("expensive_only-c0-e4", "valid")) == {
        expensive
    }
    # multihead: both levels, one head per level, the expensive head deployed
    assert sorted(levels("multihead-c80-e8")) == sorted([cheap] * 80 + [expensive] * 8)
    assert len(model_heads(load_model(runs / "multihead-c80-e8" / "run" / "model.model"))) == 2
    assert model_heads(load_model(runs / "multihead-c80-e8" / "deploy.model")) == [TARGET_HEAD]
    # the fine-tuning starts from the pre-trained model (a copy: MACE would keep its cheap E0s)
    # and trains with the expensive level's E0s, fitted to its frames
    argv = json.loads((runs / "pretrain_finetune-c80-e4" / "run" / ".done").read_text())["argv"]
    assert Path(argv[argv.index("--foundation_model") + 1]).name == "foundation-e0s.model"
    tuned, pretrained = (
        load_model(runs / run / "run" / "model.model") for run in ("pretrain_finetune-c80-e4", "pretrain-c80")
    )
    fitted = requested_e0s(TrainSettings(e0s="average"), read_frames(runs / "pretrain_finetune-c80-e4" / "train.xyz"))
    e0s = tuned.atomic_energies_fn.atomic_energies.reshape(-1).tolist()
    assert e0s == pytest.approx([fitted[int(z)] for z in tuned.atomic_numbers], abs=1e-4)
    assert not np.allclose(e0s, pretrained.atomic_energies_fn.atomic_energies.reshape(-1).tolist())
    assert levels("pretrain_finetune-c80-e4") == [expensive] * 4
    assert levels("pretrain-c80") == [cheap] * 80
