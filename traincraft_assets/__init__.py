"""traincraft_assets: labelled atomistic data -> fine-tuned MACE potentials, as Dagster assets.

`from traincraft_assets import defs` (or `dagster dev -m traincraft_assets`) gives the one
Definitions object; the Dagster wrappers live in the `defs/` subpackage, the science in `core/`.
"""

from traincraft_assets.core.quiet import silence_unactionable_warnings

silence_unactionable_warnings()

from traincraft_assets.defs.definitions import defs  # noqa: E402  (after the filters: imports warn)

__all__ = ["defs"]
