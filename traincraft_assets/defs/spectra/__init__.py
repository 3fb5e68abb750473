"""Spectra: MD trajectories of the fine-tuned model, and the IR and Raman spectra made of them."""

from traincraft_assets.defs.spectra.assets import ir_spectrum, raman_spectrum, spectrum_trajectories

ASSETS = [spectrum_trajectories, ir_spectrum, raman_spectrum]
