"""traincraft_assets: labelled atomistic data -> fine-tuned MACE potentials, as Dagster assets.

`from traincraft_assets import defs` (or `dagster dev -m traincraft_assets`) gives the one
Definitions object; the Dagster wrappers live in the `defs/` subpackage, the science in `core/`.
"""

from traincraft_assets.defs.definitions import defs

__all__ = ["defs"]
