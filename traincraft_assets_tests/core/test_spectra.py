"""The spectra against analytic series: cosines of known wavenumbers give peaks there, with the
heights the ω² factor and the quantum correction predict; the Raman split puts each wavenumber
in its own part; averages are of the unnormalised spectra; bad input is refused with numbers."""

import numpy as np
import pytest

from traincraft_assets.core.spectra import (
    SPEED_OF_LIGHT_CM_PER_FS,
    RamanSpectra,
    SpectrumSettings,
    average_spectra,
    find_peaks,
    ir_spectrum,
    raman_spectra,
    timestep_problem,
)

TIME_STEP_FS = 0.5
N_STEPS = 4000  # 2 ps: a resolution of 16.7 cm⁻¹


def cosine(wavenumber_cm: float, phase: float = 0.0) -> np.ndarray:
    t = np.arange(N_STEPS) * TIME_STEP_FS
    return np.cos(2 * np.pi * SPEED_OF_LIGHT_CM_PER_FS * wavenumber_cm * t + phase)


def dipoles(seed: int = 0, phase: float = 0.0) -> np.ndarray:
    """A permanent dipole of 2 e·Å, a line at 1000 cm⁻¹ (amplitude 1) along x, one at 3000 cm⁻¹
    (amplitude 0.5) along y, and a little noise."""
    noise = 0.01 * np.random.default_rng(seed).normal(size=(N_STEPS, 3))
    return np.stack([cosine(1000, phase), 0.5 * cosine(3000, phase), np.zeros(N_STEPS)], axis=1) + 2.0 + noise


def positions(peaks) -> list[float]:
    return [p.position_cm for p in peaks]


def test_ir_peaks_lie_at_the_series_wavenumbers_with_the_heights_the_correction_predicts():
    spectrum = ir_spectrum(dipoles(), TIME_STEP_FS)  # 300 K, Hann, harmonic correction: the defaults
    resolution = spectrum.settings["resolution_cm"]
    assert resolution == pytest.approx(1 / (N_STEPS * TIME_STEP_FS * SPEED_OF_LIGHT_CM_PER_FS))
    peaks = find_peaks(spectrum)
    # two peaks, no zero-frequency one from the permanent dipole, each within the resolution
    assert positions(peaks) == pytest.approx([1000.0, 3000.0], abs=resolution)
    # harmonic: ω²·|amplitude|²: (1·1000²) / (0.25·3000²) = 0.444
    assert peaks[0].height / peaks[1].height == pytest.approx(1 / 2.25, rel=0.05)
    assert spectrum.intensities.max() == 1.0
    assert spectrum.wavenumbers_cm[0] == 0.0 and spectrum.wavenumbers_cm[-1] <= 4000.0
    assert spectrum.settings == {
        "kind": "ir",
        "temperature_k": 300.0,
        "window": "hann",
        "correction": "harmonic",
        "highest_wavenumber_cm": 4000.0,
        "required_resolution_cm": None,
        "time_step_fs": TIME_STEP_FS,
        "n_steps": N_STEPS,
        "length_fs": N_STEPS * TIME_STEP_FS,
        "resolution_cm": resolution,
        "n_trajectories": 1,
    }

    # no correction: ω·(1 - e^-x)·|amplitude|², about (1·1000) / (0.25·3000) = 1.33 at 300 K
    classical = ir_spectrum(dipoles(), TIME_STEP_FS, SpectrumSettings(correction="none", window="blackman"))
    assert (classical.settings["correction"], classical.settings["window"]) == ("none", "blackman")
    low, high = find_peaks(classical)
    assert low.height / high.height == pytest.approx(4 / 3, rel=0.05)


def test_peaks_closer_than_the_minimum_separation_are_one():
    series = np.stack([cosine(1000) + cosine(1060), np.zeros(N_STEPS), np.zeros(N_STEPS)], axis=1)
    spectrum = ir_spectrum(series, TIME_STEP_FS, SpectrumSettings(window="none"))
    assert len(find_peaks(spectrum, min_separation_cm=20)) == 2
    assert len(find_peaks(spectrum, min_separation_cm=100)) == 1


def test_raman_puts_an_isotropic_line_in_the_isotropic_part_and_an_anisotropic_one_in_the_other():
    alpha = np.zeros((N_STEPS, 3, 3)) + (5.0 + 0.3 * cosine(800))[:, None, None] * np.eye(3)
    alpha[:, 0, 1] = alpha[:, 1, 0] = 0.2 * cosine(1600)  # traceless: anisotropic only
    spectra = raman_spectra(alpha, TIME_STEP_FS)
    resolution = spectra.total.settings["resolution_cm"]

    assert positions(find_peaks(spectra.isotropic)) == pytest.approx([800.0], abs=resolution)
    assert positions(find_peaks(spectra.anisotropic)) == pytest.approx([1600.0], abs=resolution)
    assert positions(find_peaks(spectra.total)) == pytest.approx([800.0, 1600.0], abs=resolution)
    # the other part's line is absent: below the window's leakage, 0.1% of the maximum
    at = {w: int(np.argmin(abs(spectra.total.wavenumbers_cm - w))) for w in (800, 1600)}
    assert spectra.isotropic.intensities[at[1600]] < 1e-3
    assert spectra.anisotropic.intensities[at[800]] < 1e-3
    # the total is the sum of the parts, each with its weight (45·ā², 7·γ²)
    unnormalised = {name: part.intensities * part.scale for name, part in spectra._asdict().items()}
    np.testing.assert_allclose(unnormalised["total"], unnormalised["isotropic"] + unnormalised["anisotropic"])
    # ā = 0.3 cos, γ² = (3/2)·tr(β·β) = 3·0.2² cos²: 45·0.09 / (7·0.12), times Q(800)/Q(1600)
    q = [x / -np.expm1(-x) for x in (1.4388 * 800 / 300, 1.4388 * 1600 / 300)]
    expected = 45 * 0.09 * q[0] / (7 * 0.12 * q[1])
    assert spectra.isotropic.scale / spectra.anisotropic.scale == pytest.approx(expected, rel=0.05)
    assert spectra.total.settings["kind"] == "raman total"
    assert "45·ā² + 7·γ²" in spectra.total.settings["convention"]

    voigt = np.stack(
        [alpha[:, 0, 0], alpha[:, 1, 1], alpha[:, 2, 2], alpha[:, 1, 2], alpha[:, 0, 2], alpha[:, 0, 1]], 1
    )
    for same in (voigt, alpha.reshape(N_STEPS, 9)):
        np.testing.assert_allclose(raman_spectra(same, TIME_STEP_FS).total.intensities, spectra.total.intensities)


def test_trajectories_average_as_their_unnormalised_spectra():
    first = ir_spectrum(dipoles(seed=0), TIME_STEP_FS)
    second = ir_spectrum(2 * dipoles(seed=1, phase=1.0), TIME_STEP_FS)
    mean = average_spectra([first, second])
    np.testing.assert_allclose(
        mean.intensities * mean.scale, (first.intensities * first.scale + second.intensities * second.scale) / 2
    )
    assert mean.intensities.max() == 1.0
    assert mean.settings["n_trajectories"] == 2
    assert positions(find_peaks(mean)) == pytest.approx([1000.0, 3000.0], abs=mean.settings["resolution_cm"])

    runs = [raman_spectra(np.eye(3) * (1 + 0.1 * cosine(900, p))[:, None, None], TIME_STEP_FS) for p in (0, 2)]
    averaged = RamanSpectra(*map(average_spectra, zip(*runs)))
    assert averaged.isotropic.settings["n_trajectories"] == 2

    shorter = ir_spectrum(dipoles()[:3000], TIME_STEP_FS)
    with pytest.raises(
        ValueError, match=r"spectrum 1 is on another grid than spectrum 0 \(720 points.*must share the time step"
    ):
        average_spectra([first, shorter])
    hotter = ir_spectrum(dipoles(), TIME_STEP_FS, SpectrumSettings(temperature_k=400.0))
    with pytest.raises(ValueError, match=r"other settings than spectrum 0 \(\{'temperature_k': \(300.0, 400.0\)\}"):
        average_spectra([first, hotter])
    with pytest.raises(ValueError, match="no spectra to average"):
        average_spectra([])


def test_a_time_step_too_long_for_the_fastest_mode_is_refused_with_the_numbers():
    assert timestep_problem(2.0, 3700.0) == (
        "vibrations near 3700 cm⁻¹ have a period of 9.0 fs; a 2 fs time step gives 4.5 steps per period, and a "
        "stable MD that samples them needs at least 10: use a time step of at most 0.9 fs"
    )
    assert timestep_problem(0.5, 3700.0) is None
    assert "above this step's Nyquist limit of 3336 cm⁻¹, so they would fold back" in timestep_problem(5.0, 3700.0)


def test_bad_series_are_refused_saying_what_was_expected_and_found():
    good = dipoles()
    with_nan = good.copy()
    with_nan[[12, 13]] = np.nan
    cases = [
        (
            lambda: ir_spectrum(with_nan, 0.5),
            r"NaN or infinite values at 2 of 4000 steps \(first at steps \[12, 13\]\)",
        ),
        (
            lambda: ir_spectrum(good[:, 0], 0.5),
            r"expected dipoles of shape \(n_steps, 3\) in e·Å; got \(4000,\)",
        ),
        (lambda: ir_spectrum(good[:1], 0.5), "at least 2 steps; got 1"),
        (
            lambda: ir_spectrum(good, 5.0),
            "sampled every 5 fs resolves wavenumbers up to 3336 cm⁻¹ .* 4000 cm⁻¹ were asked for: sample every 4.2 fs or less",
        ),
        (
            lambda: ir_spectrum(good, 0.5, SpectrumSettings(required_resolution_cm=2.0)),
            r"resolution of 2 cm⁻¹ needs a series at least 16678 fs long .* 33357 steps of 0.5 fs; this one has 4000 steps \(2000 fs, resolution 16.7 cm⁻¹\)",
        ),
        (
            lambda: ir_spectrum(good, 0.5, SpectrumSettings(window="hamming")),
            r"unknown window 'hamming': expected one of \['hann', 'blackman', 'none'\]",
        ),
        (lambda: ir_spectrum(good, 0.5, SpectrumSettings(temperature_k=0)), "temperature_k must be positive"),
        (lambda: ir_spectrum(good, 0.0), "time_step_fs must be positive"),
        (
            lambda: raman_spectra(np.zeros((10, 4)), 0.5),
            r"expected polarizabilities of shape \(n_steps, 3, 3\), .* got \(10, 4\)",
        ),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
