"""traincraft_assets: labelled atomistic data -> fine-tuned MACE potentials, as Dagster assets.

`traincraft_assets.definitions` is what Dagster loads (`dagster dev -m traincraft_assets`): the
definitions, built when Dagster calls it (defs/definitions.py). The Dagster wrappers live in
the `defs/` subpackage, the science in `core/`, what a person does in `app/`. Importing the
package imports no Dagster: processes that need only the science (labelling workers, which are
spawned) would otherwise each pay Dagster's import and the graph's construction, about 3 s.
"""

from traincraft_assets.core.quiet import silence_unactionable_warnings

silence_unactionable_warnings()

__all__ = ["definitions"]


def __getattr__(name: str):
    """`definitions`, imported on first use rather than with the package."""
    if name == "definitions":
        from traincraft_assets.defs.definitions import defs

        return defs
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:  # Dagster's loader looks for the definitions among the module's names
    return sorted({*globals(), "definitions"})
