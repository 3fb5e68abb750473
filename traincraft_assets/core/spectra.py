"""IR and Raman spectra from molecular-dynamics time series, their average over trajectories,
and their peaks.

Units, throughout: time in fs, wavenumbers in cm⁻¹, temperature in K, dipoles in e·Å and
polarizabilities in e·Å²/V (as the project's labellers write them, core/qm.py). Intensities are
arbitrary: each spectrum is normalised to a maximum of 1 and keeps the factor it was divided by
(`scale`), so the spectra of several trajectories average as their unnormalised sums would.

Both spectra start from the classical line shape Ĩ(ω) of a series x(t):

- the series' mean is removed (a permanent dipole or the mean polarizability is no vibration);
- its autocorrelation C(τ) = Σₜ x(t)·x(t+τ) / n is computed by FFT (Wiener-Khinchin), the series
  zero-padded to twice its length so that the circular correlation is the linear one: O(n log n);
- a window over the lags, from 1 at τ = 0 to 0 at the longest lag (one half of a Hann or a
  Blackman window, or none), trades resolution for less ringing around each line;
- the cosine transform of the windowed correlation, zero-padded to four times its length, gives
  Ĩ on a grid four times finer than the resolution, the Fourier limit 1/(c·T) of a series T long.

A quantum correction Q(ω) turns the classical line shape into the quantum one, Ĩ_qm ≈ Q·Ĩ
(Ramírez et al., J. Chem. Phys. 121, 3973 (2004)), with x = ħω/kT = c₂·wavenumber/T:

- 'harmonic' (the default): Q = x / (1 - e⁻ˣ), exact for harmonic modes;
- 'none': Q = 1, the classical line shape taken as the quantum one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal, NamedTuple, get_args

import numpy as np

Window = Literal["hann", "blackman", "none"]
Correction = Literal["harmonic", "none"]
WINDOWS: tuple[Window, ...] = get_args(Window)
CORRECTIONS: tuple[Correction, ...] = get_args(Correction)

SPEED_OF_LIGHT_CM_PER_FS = 2.99792458e-5
SECOND_RADIATION_CONSTANT_CM_K = 1.438776877  # h·c/k: x = ħω/kT = 1.4388·wavenumber/T
# MD integrates a vibration stably, and samples it well, at 10 or more steps per period.
MIN_STEPS_PER_PERIOD = 10
# The cosine transform's zero padding: the grid is this many times finer than the resolution.
GRID_PER_RESOLUTION = 4


@dataclass(frozen=True)
class SpectrumSettings:
    """How a spectrum is made from a series; recorded with it."""

    temperature_k: float = field(
        default=300.0, metadata={"help": "the MD's temperature (K), for the quantum correction"}
    )
    window: Window = field(
        default="hann", metadata={"help": "window over the correlation's lags: hann, blackman or none"}
    )
    correction: Correction = field(
        default="harmonic", metadata={"help": "quantum correction: harmonic (x/(1 - exp(-x)), x = ħω/kT) or none"}
    )
    highest_wavenumber_cm: float = field(
        default=4000.0, metadata={"help": "the spectrum's upper end (cm⁻¹); the sampling must resolve it"}
    )
    required_resolution_cm: float | None = field(
        default=None, metadata={"help": "refuse a series too short to resolve this (cm⁻¹); unset: any length"}
    )

    def problems(self) -> list[str]:
        problems = [
            f"unknown {what} {value!r}: expected one of {list(choices)}."
            for what, value, choices in (("window", self.window, WINDOWS), ("correction", self.correction, CORRECTIONS))
            if value not in choices
        ]
        if not self.temperature_k > 0:
            problems.append(
                f"temperature_k must be positive (the MD's temperature, K, for the quantum correction); got {self.temperature_k}."
            )
        if not self.highest_wavenumber_cm > 0:
            problems.append(f"highest_wavenumber_cm must be positive (cm⁻¹); got {self.highest_wavenumber_cm}.")
        return problems


@dataclass(frozen=True)
class Spectrum:
    """Intensities (normalised to a maximum of 1) on a wavenumber grid (cm⁻¹) from 0, with
    `scale`, the maximum they were divided by, and the settings that made them."""

    wavenumbers_cm: np.ndarray
    intensities: np.ndarray
    scale: float
    settings: dict


class RamanSpectra(NamedTuple):
    """The isotropic (45·ā²) and anisotropic (7·γ²) parts of the unpolarised Raman spectrum and
    their sum, each normalised on its own; their `scale`s keep their relative sizes."""

    isotropic: Spectrum
    anisotropic: Spectrum
    total: Spectrum


class Peak(NamedTuple):
    """A peak's position (cm⁻¹) and height (in a normalised spectrum, or a stick's relative intensity)."""

    position_cm: float
    height: float


def nyquist_cm(time_step_fs: float) -> float:
    """The highest wavenumber a series sampled every `time_step_fs` resolves: 1/(2·Δt)."""
    return 1.0 / (2.0 * time_step_fs * SPEED_OF_LIGHT_CM_PER_FS)


def timestep_problem(time_step_fs: float, highest_wavenumber_cm: float) -> str | None:
    """Why `time_step_fs` is too long for MD of vibrations up to `highest_wavenumber_cm`, with the
    numbers, or None when it gives at least MIN_STEPS_PER_PERIOD steps per period. Nyquist's
    two steps per period only keep the line from folding back; a stable integration needs ~10."""
    period_fs = 1.0 / (highest_wavenumber_cm * SPEED_OF_LIGHT_CM_PER_FS)
    steps = period_fs / time_step_fs
    if steps >= MIN_STEPS_PER_PERIOD:
        return None
    folds = (
        f"; they are also above this step's Nyquist limit of {nyquist_cm(time_step_fs):.0f} cm⁻¹, so they would fold back"
        if highest_wavenumber_cm > nyquist_cm(time_step_fs)
        else ""
    )
    return (
        f"vibrations near {highest_wavenumber_cm:.0f} cm⁻¹ have a period of {period_fs:.1f} fs; a "
        f"{time_step_fs:g} fs time step gives {steps:.1f} steps per period, and a stable MD that samples "
        f"them needs at least {MIN_STEPS_PER_PERIOD}{folds}: use a time step of at most "
        f"{period_fs / MIN_STEPS_PER_PERIOD:.2g} fs"
    )


def ir_spectrum(dipoles, time_step_fs: float, settings: SpectrumSettings = SpectrumSettings()) -> Spectrum:
    """The IR absorption (coefficient times refractive index) ∝ ω·(1 - e⁻ˣ)·Q(ω)·Ĩ_μ(ω) of a
    dipole series (e·Å, [n_steps, 3], sampled every `time_step_fs`), from 0 to
    `settings.highest_wavenumber_cm`.

    With the harmonic correction this is ħω²·Ĩ_μ/kT, the familiar classical form, and the
    temperature only scales it. ω²·Ĩ_μ is the spectrum of the dipole's derivative
    (FT⟨μ̇μ̇⟩ = ω²·FT⟨μμ⟩): it is applied analytically rather than by differentiating μ, since a
    finite-difference μ̇ damps a line by (sin ωΔt / ωΔt)², 12% at 10 steps per period."""
    series = _series(dipoles, "dipoles", (3,), "e·Å")
    recorded = _recorded("ir", settings, time_step_fs, len(series))
    wavenumbers, shape = _line_shape(series, time_step_fs, settings)
    x = _reduced_energy(wavenumbers, settings.temperature_k)
    absorption = wavenumbers * -np.expm1(-x) * _quantum_factor(x, settings.correction) * shape
    return _normalised(wavenumbers, absorption, recorded)


def raman_spectra(
    polarizabilities, time_step_fs: float, settings: SpectrumSettings = SpectrumSettings()
) -> RamanSpectra:
    """The Stokes Raman spectra Q(ω)·Ĩ(ω) of a polarizability series (e·Å²/V, [n_steps, 3, 3],
    [n_steps, 9] or the six unique components [n_steps, 6] in Voigt order xx, yy, zz, yz, xz, xy).

    The polarizability A splits into its isotropic part ā = tr(A)/3 and the traceless
    anisotropic part β = A - ā·1, with γ² = (3/2)·tr(β·β). Unpolarised Raman scattering (linearly polarised incident light,
    90° scattering, no analyser) is I = 45·ā² + 7·γ²; in time, the isotropic spectrum is
    45·Q·Ĩ_ā and the anisotropic one 7·(3/2)·Q·Σᵢⱼ Ĩ_βᵢⱼ, and the total their sum. No factor
    for the excitation wavelength ((ω₀ - ω)⁴) is applied."""
    alpha = _tensors(polarizabilities)
    recorded = {
        **_recorded("raman", settings, time_step_fs, len(alpha)),
        "convention": "unpolarised, 90°: 45·ā² + 7·γ², γ² = (3/2)·tr(β·β)",
    }
    isotropic = np.trace(alpha, axis1=1, axis2=2)[:, None] / 3.0
    anisotropic = (alpha - isotropic[:, :, None] * np.eye(3)).reshape(len(alpha), 9)
    parts = {}
    for name, series, weight in (("isotropic", isotropic, 45.0), ("anisotropic", anisotropic, 7.0 * 1.5)):
        wavenumbers, shape = _line_shape(series, time_step_fs, settings)
        parts[name] = weight * shape
    quantum = _quantum_factor(_reduced_energy(wavenumbers, settings.temperature_k), settings.correction)
    iso, aniso = quantum * parts["isotropic"], quantum * parts["anisotropic"]
    return RamanSpectra(
        _normalised(wavenumbers, iso, {**recorded, "kind": "raman isotropic"}),
        _normalised(wavenumbers, aniso, {**recorded, "kind": "raman anisotropic"}),
        _normalised(wavenumbers, iso + aniso, {**recorded, "kind": "raman total"}),
    )


def average_spectra(spectra: Sequence[Spectrum]) -> Spectrum:
    """The mean of several trajectories' spectra, as the mean of their unnormalised intensities.
    They must share the grid and the settings (time step, length, window, correction,
    temperature). Raman spectra average part by part: RamanSpectra(*map(average_spectra, zip(*runs)))."""
    if not spectra:
        raise ValueError("no spectra to average: expected one per trajectory, got none.")
    first = spectra[0]
    for index, spectrum in enumerate(spectra[1:], start=1):
        if not np.array_equal(spectrum.wavenumbers_cm, first.wavenumbers_cm):
            raise ValueError(
                f"spectrum {index} is on another grid than spectrum 0 ({_grid(spectrum)} against "
                f"{_grid(first)}): trajectories averaged must share the time step, the number of steps "
                "and the highest wavenumber."
            )
        differ = {
            key: (first.settings[key], spectrum.settings.get(key))
            for key in first.settings
            if key != "n_trajectories" and spectrum.settings.get(key) != first.settings[key]
        }
        if differ:
            raise ValueError(
                f"spectrum {index} was made with other settings than spectrum 0 ({differ}, as (spectrum 0, "
                f"spectrum {index})): average spectra made alike."
            )
    total = sum(s.intensities * s.scale for s in spectra) / len(spectra)
    settings = {**first.settings, "n_trajectories": sum(s.settings["n_trajectories"] for s in spectra)}
    return _normalised(first.wavenumbers_cm, total, settings)


def find_peaks(spectrum: Spectrum, min_prominence: float = 0.05, min_separation_cm: float = 20.0) -> list[Peak]:
    """The spectrum's peaks, sorted by position: local maxima that stand at least
    `min_prominence` (of the normalised maximum 1) above their surroundings, the higher one kept
    of two closer than `min_separation_cm`."""
    from scipy.signal import find_peaks as scipy_find_peaks

    spacing = float(spectrum.wavenumbers_cm[1] - spectrum.wavenumbers_cm[0])
    distance = max(1, round(min_separation_cm / spacing))
    indices, _ = scipy_find_peaks(spectrum.intensities, prominence=min_prominence, distance=distance)
    return [Peak(float(spectrum.wavenumbers_cm[i]), float(spectrum.intensities[i])) for i in indices]


def _line_shape(series: np.ndarray, time_step_fs: float, settings: SpectrumSettings) -> tuple[np.ndarray, np.ndarray]:
    """Wavenumbers (cm⁻¹, 0 to the highest asked for) and the classical line shape Ĩ of
    `series` ([n_steps, components], summed over components)."""
    n = len(series)
    centred = series - series.mean(axis=0)
    transform = np.fft.rfft(centred, n=2 * n, axis=0)
    correlation = np.fft.irfft(np.abs(transform) ** 2, n=2 * n, axis=0)[:n].sum(axis=1) / n
    windowed = correlation * _half_window(settings.window, n)
    n_fft = GRID_PER_RESOLUTION * n
    shape = 2.0 * np.fft.rfft(windowed, n=n_fft).real - windowed[0]  # the cosine transform of C(|τ|)
    wavenumbers = np.fft.rfftfreq(n_fft, d=time_step_fs) / SPEED_OF_LIGHT_CM_PER_FS
    kept = wavenumbers <= settings.highest_wavenumber_cm
    return wavenumbers[kept], shape[kept]


def _half_window(name: str, n: int) -> np.ndarray:
    """The falling half of a symmetric window 2n - 1 long: 1 at lag 0, 0 at lag n - 1."""
    if name == "none":
        return np.ones(n)
    full = np.hanning(2 * n - 1) if name == "hann" else np.blackman(2 * n - 1)
    return full[n - 1 :]


def _check_sampling(n_steps: int, time_step_fs: float, settings: SpectrumSettings) -> None:
    if not time_step_fs > 0:
        raise ValueError(f"time_step_fs must be positive (fs between samples); got {time_step_fs}.")
    highest_wavenumber_cm, resolution_cm = settings.highest_wavenumber_cm, settings.required_resolution_cm
    if highest_wavenumber_cm > nyquist_cm(time_step_fs):
        raise ValueError(
            f"a series sampled every {time_step_fs:g} fs resolves wavenumbers up to {nyquist_cm(time_step_fs):.0f} "
            f"cm⁻¹ (Nyquist: 1/(2·Δt)), and {highest_wavenumber_cm:g} cm⁻¹ were asked for: sample every "
            f"{1 / (2 * highest_wavenumber_cm * SPEED_OF_LIGHT_CM_PER_FS):.2g} fs or less, or lower highest_wavenumber_cm."
        )
    if resolution_cm is not None and _resolution_cm(n_steps, time_step_fs) > resolution_cm:
        needed_fs = 1.0 / (resolution_cm * SPEED_OF_LIGHT_CM_PER_FS)
        raise ValueError(
            f"a resolution of {resolution_cm:g} cm⁻¹ needs a series at least {needed_fs:.0f} fs long "
            f"(1/(c·Δwavenumber)), {int(np.ceil(needed_fs / time_step_fs))} steps of {time_step_fs:g} fs; this one has "
            f"{n_steps} steps ({n_steps * time_step_fs:g} fs, resolution "
            f"{_resolution_cm(n_steps, time_step_fs):.1f} cm⁻¹): run longer, or lower required_resolution_cm."
        )


def _resolution_cm(n_steps: int, time_step_fs: float) -> float:
    return 1.0 / (n_steps * time_step_fs * SPEED_OF_LIGHT_CM_PER_FS)


def _reduced_energy(wavenumbers_cm: np.ndarray, temperature_k: float) -> np.ndarray:
    """x = ħω/kT of each wavenumber."""
    return SECOND_RADIATION_CONSTANT_CM_K * wavenumbers_cm / temperature_k


def _quantum_factor(x: np.ndarray, correction: str) -> np.ndarray:
    """Q of each x = ħω/kT: x/(1 - e⁻ˣ) ('harmonic', 1 at x = 0) or 1 ('none')."""
    factor = np.ones_like(x)
    if correction == "harmonic":
        positive = x > 0
        factor[positive] = x[positive] / -np.expm1(-x[positive])
    return factor


def _series(values, name: str, trailing: tuple[int, ...], unit: str) -> np.ndarray:
    """`values` as a float array [n_steps, *trailing], refused when it has another shape, fewer
    than two steps, or a NaN or an infinity."""
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 + len(trailing) or array.shape[1:] != trailing:
        raise ValueError(
            f"expected {name} of shape (n_steps, {', '.join(map(str, trailing))}) in {unit}; got {array.shape}."
        )
    if len(array) < 2:
        raise ValueError(f"{name}: a correlation needs at least 2 steps; got {len(array)}.")
    bad = np.flatnonzero(~np.isfinite(array).reshape(len(array), -1).all(axis=1))
    if len(bad):
        raise ValueError(
            f"{name} have NaN or infinite values at {len(bad)} of {len(array)} steps (first at steps "
            f"{bad[:5].tolist()}): did the MD blow up? Cut the series before the first bad step, or rerun it."
        )
    return array


def _tensors(polarizabilities) -> np.ndarray:
    """Polarizabilities as symmetric [n_steps, 3, 3]: from 3 x 3, 9 or Voigt's 6 components."""
    array = np.asarray(polarizabilities, dtype=float)
    if array.ndim == 3 and array.shape[1:] == (3, 3):
        array = array.reshape(len(array), 9)
    if array.ndim == 2 and array.shape[1] == 6:
        xx, yy, zz, yz, xz, xy = _series(array, "polarizabilities", (6,), "e·Å²/V").T
        tensors = np.stack([xx, xy, xz, xy, yy, yz, xz, yz, zz], axis=1).reshape(-1, 3, 3)
    elif array.ndim == 2 and array.shape[1] == 9:
        tensors = _series(array, "polarizabilities", (9,), "e·Å²/V").reshape(-1, 3, 3)
    else:
        raise ValueError(
            "expected polarizabilities of shape (n_steps, 3, 3), (n_steps, 9) or (n_steps, 6) (xx, yy, zz, yz, xz, "
            f"xy) in e·Å²/V; got {np.shape(polarizabilities)}."
        )
    return 0.5 * (tensors + tensors.transpose(0, 2, 1))


def _recorded(kind: str, settings: SpectrumSettings, time_step_fs: float, n_steps: int) -> dict:
    """What a spectrum records of how it was made, once the settings and the sampling are
    checked: refused before any work when they cannot be used."""
    if problems := settings.problems():
        raise ValueError(" ".join(problems))
    _check_sampling(n_steps, time_step_fs, settings)
    return {
        "kind": kind,
        **asdict(settings),
        "time_step_fs": time_step_fs,
        "n_steps": n_steps,
        "length_fs": n_steps * time_step_fs,
        "resolution_cm": _resolution_cm(n_steps, time_step_fs),
        "n_trajectories": 1,
    }


def _normalised(wavenumbers: np.ndarray, intensities: np.ndarray, settings: dict) -> Spectrum:
    scale = float(np.max(intensities))
    normalised = intensities / scale if scale > 0 else np.zeros_like(intensities)
    return Spectrum(wavenumbers, normalised, scale, settings)


def _grid(spectrum: Spectrum) -> str:
    grid = spectrum.wavenumbers_cm
    return f"{len(grid)} points, {grid[1] - grid[0]:.3g} cm⁻¹ apart, up to {grid[-1]:.0f}"
