"""traincraft_assets: labelled atomistic data -> fine-tuned MACE potentials, as Dagster assets.

`from traincraft_assets import defs` (or `dagster dev -m traincraft_assets`) gives the one
Definitions object; the Dagster wrappers live in the `defs/` subpackage, the science in `core/`.
`defs` is built on first use, not on import: processes that need only the science (labelling
workers, which are spawned) would otherwise each pay Dagster's import and the graph's
construction, about 3 s.
"""

import sys
import types

from traincraft_assets.core.quiet import silence_unactionable_warnings

silence_unactionable_warnings()

__all__ = ["defs"]


class _Package(types.ModuleType):
    @property
    def defs(self):
        from traincraft_assets.defs.definitions import defs

        return defs

    @defs.setter
    def defs(self, subpackage):
        """Importing the `defs` subpackage binds it here; the name stays the Definitions."""

    def __dir__(self):  # Dagster's loader (`-m traincraft_assets`) looks for Definitions in dir()
        return sorted({*super().__dir__(), "defs"})


sys.modules[__name__].__class__ = _Package
