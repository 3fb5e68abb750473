"""How every asset and asset check of the graph runs: what it reads is stated once.

An asset of this project turns artifacts into an artifact. It opens the store folders of its
upstream assets (typed by core/artifacts.py), calls core, and publishes its own folder under
its sha256, which is its Dagster data version. `@artifact_asset` makes that a construction:

- the asset states once which artifact kinds it reads (`reads=[Split, FoundationModel]`);
  its Dagster dependencies are derived from them, so the lineage Dagster draws is what the
  code reads;
- preflight runs before the body (defs/preflight.py), in every step;
- the body gets a `Step`. It reads only what it declared (anything else fails, naming the
  kind to add), writes its own kind, and returns `step.materialized(...)`: the artifact's
  sha256 as data version, and every artifact version it read as `read_artifacts` metadata.

`@artifact_check` does the same for asset checks, and `fanned_out_asset` for an asset whose work
runs as several steps (plan, one step per part, merge). Each gives a recipe whose
`build(deployment)` makes the Dagster definition once the deployment is known (pod profile,
retries). The project layout page of the docs says why this is a decorator and not an IO manager.
"""

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import dagster as dg

from traincraft_assets.core.settings import Settings, load_settings
from traincraft_assets.core.store import Artifact, ArtifactStore
from traincraft_assets.core.training import Launch, TrainingDiverged
from traincraft_assets.defs import instance
from traincraft_assets.defs.config import SettingsConfig
from traincraft_assets.defs.k8s import Deployment
from traincraft_assets.defs.preflight import Check, preflight, register_preflight

A = TypeVar("A", bound=Artifact)
Context = dg.AssetExecutionContext | dg.AssetCheckExecutionContext | dg.OpExecutionContext


@dataclass(frozen=True)
class EveryPartition:
    """A read of every partition of a partitioned upstream, as one dependency on all of them."""

    kind: type[Artifact]


Read = type[Artifact] | EveryPartition


def _kind(read: Read) -> type[Artifact]:
    return read.kind if isinstance(read, EveryPartition) else read


def _deps(reads: Sequence[Read]) -> list[dg.AssetDep]:
    return [
        dg.AssetDep(
            _kind(r).asset, partition_mapping=dg.AllPartitionMapping() if isinstance(r, EveryPartition) else None
        )
        for r in reads
    ]


class UndeclaredRead(RuntimeError):
    """A step read an artifact kind its decorator does not declare: its lineage would lie."""


class Step:
    """What a step's body works with: its Dagster context, the store, the environment's
    settings, and its declared reads. An asset may also read its own earlier artifacts."""

    def __init__(self, context: Context, name: str, reads: Sequence[type[Artifact]], own: type[Artifact] | None):
        self.context = context
        self.log = context.log
        self.name = name
        self.store: ArtifactStore = context.resources.store.store()
        self._own = own
        self._readable = {kind.asset for kind in (*reads, *([own] if own else []))}
        self.read_versions: list[dict] = []  # every artifact version opened, in order

    @functools.cached_property
    def settings(self) -> Settings:
        """The environment as this step's process sees it (a pod's own, on Kubernetes)."""
        return load_settings()

    @property
    def launch(self) -> Launch:
        """How a training in this step is started: one process per GPU of its pod."""
        return Launch.from_settings(self.settings)

    @property
    def partition(self) -> str:
        return self.context.partition_key

    def latest(self, kind: type[A], partition: str | None = None) -> A | None:
        """The artifact `kind` (`partition`) was materialized to in this run, else its latest;
        None if it never was (defs/instance.py: artifact_version)."""
        self._declared(kind)
        sha = instance.artifact_version(self.context.instance, self.context.run.run_id, kind.asset, partition)
        return None if sha is None else self.open(kind, sha, partition)

    def read(self, kind: type[A], partition: str | None = None) -> A:
        """`latest`, for an input the step cannot do without."""
        artifact = self.latest(kind, partition)
        if artifact is None:
            where = f" for partition {partition!r}" if partition else ""
            raise RuntimeError(
                f"{self.name} needs {kind.asset!r}{where}, which has never been materialized. Materialize "
                f"it first (e.g. dagster asset materialize -m traincraft_assets --select {kind.asset})."
            )
        return artifact

    def open(self, kind: type[A], sha256: str, partition: str | None = None) -> A:
        """A given version of `kind` (one a manifest or a decision recorded)."""
        self._declared(kind)
        artifact = self.store.open(kind, sha256)
        entry = {"asset": kind.asset, **({"partition": partition} if partition else {}), "data_version": sha256}
        if entry not in self.read_versions:
            self.read_versions.append(entry)
        return artifact

    def write(self, fill: Callable[[A], Any]) -> tuple[A, Any]:
        """Fill this asset's own artifact and publish it (core.store.ArtifactStore.write)."""
        return self.store.write(self._own, fill)

    def materialized(self, artifact: Artifact, metadata: dict) -> dg.MaterializeResult:
        """The result: the artifact's sha256 as data version, its path, and what was read."""
        return dg.MaterializeResult(
            data_version=dg.DataVersion(artifact.sha256),
            metadata={
                **metadata,
                "artifact_path": dg.MetadataValue.path(str(artifact.path)),
                "artifact_sha256": artifact.sha256,
                "read_artifacts": dg.MetadataValue.json(self.read_versions),
            },
        )

    @contextlib.contextmanager
    def refusing(self, *errors: type[Exception], prefix: str = "") -> Iterator[None]:
        """Inside, these errors mean the input or the settings cannot work: the step fails with
        their message and is not retried (a retry would fail the same way)."""
        try:
            yield
        except errors as exc:
            raise dg.Failure(description=f"{prefix}{exc}", allow_retries=False) from exc

    @contextlib.contextmanager
    def training(self, prefix: str = "") -> Iterator[None]:
        """Wrap the part of a step that trains. Dagster ends a run CANCELED when it finds the run
        CANCELING as the interrupt arrives (a stop from the UI); Ctrl-C on `dagster asset
        materialize` is a person stopping it too, so it is marked so (the trainer stops MACE on
        the way out). A diverged training fails without a retry: it would diverge again."""
        try:
            with self.refusing(TrainingDiverged, prefix=prefix):
                yield
        except (KeyboardInterrupt, dg.DagsterExecutionInterruptedError):
            instance.mark_canceling(self.context.instance, self.context.run.run_id, "stopped with Ctrl-C")
            raise

    def _declared(self, kind: type[Artifact]) -> None:
        if kind.asset not in self._readable:
            raise UndeclaredRead(
                f"{self.name} read {kind.asset!r}, which it does not declare. Add {kind.__name__} to its "
                "reads=[...]: its dependencies in the graph are derived from them."
            )


def _compute(body: Callable, name: str, reads: Sequence[type[Artifact]], own, config_type: type | None, context_type):
    """The function Dagster calls: a Step, preflight, then the body; a generator when the body
    is one (a step that may yield nothing). Its signature is built so that Dagster sees the
    context and the typed config parameter it expects."""

    def start(context: Context) -> Step:
        step = Step(context, name, reads, own)
        preflight(context, step.store, step.settings)
        return step

    if inspect.isgeneratorfunction(body):

        def compute(context, config=None):
            step = start(context)
            yield from body(step, config) if config is not None else body(step)

    else:

        def compute(context, config=None):
            step = start(context)
            return body(step, config) if config is not None else body(step)

    parameters = [inspect.Parameter("context", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=context_type)]
    if config_type is not None:
        parameters.append(inspect.Parameter("config", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=config_type))
    compute.__signature__ = inspect.Signature(parameters)
    compute.__name__ = compute.__qualname__ = body.__name__
    compute.__doc__ = body.__doc__
    return compute


class _AssetRecipe:
    """What every asset recipe answers: the name and key of the asset it makes."""

    kind: type[Artifact]

    @property
    def name(self) -> str:
        return self.kind.asset

    @property
    def key(self) -> dg.AssetKey:
        return dg.AssetKey(self.name)


@dataclass(frozen=True)
class ArtifactAsset(_AssetRecipe):
    """An asset recipe (see the module docstring); `build` gives the Dagster asset."""

    kind: type[Artifact]
    body: Callable
    reads: tuple[Read, ...]
    config: type[SettingsConfig] | None
    profile: str
    resources: frozenset[str]
    options: dict = field(default_factory=dict)

    def build(self, deployment: Deployment) -> dg.AssetsDefinition:
        reads = tuple(_kind(r) for r in self.reads)
        compute = _compute(self.body, self.name, reads, self.kind, self.config, dg.AssetExecutionContext)
        return dg.asset(
            name=self.name,
            deps=_deps(self.reads),
            required_resource_keys={"store", *self.resources},
            code_version="1",
            description=inspect.getdoc(self.body),
            **deployment.step(self.profile),
            **self.options,
        )(compute)


@dataclass(frozen=True)
class FannedOutAsset(_AssetRecipe):
    """An asset recipe whose work runs as several steps, so that its parts can run at once (a
    pod each on Kubernetes) and a lost one is retried alone: a Dagster graph of `plan` (how
    many parts), one `part` step per part (its pod profile, retry policy and concurrency pool),
    and `merge`, which publishes the artifact. Each step gets a Step and runs preflight as an
    artifact_asset's does. The steps share the asset's config: a run config gives it under
    `ops: <asset>: config:`, as for any other asset. The steps pass nothing but their order
    between them (Nothing outputs, so no IO manager); what they share lies in the store."""

    kind: type[Artifact]
    plan: Callable  # (step, config) -> the number of parts
    part: Callable  # (step, config, index) -> None; may run again (a retry), so idempotent
    merge: Callable  # (step, config) -> step.materialized(...)
    config: type[SettingsConfig]
    profile: str  # plan's and merge's pod profile
    part_profile: str
    resources: frozenset[str]
    options: dict = field(default_factory=dict)
    # Unpartitioned upstream kinds only: a graph asset takes its dependencies as Nothing inputs
    # of its first step (so no IO manager loads anything), and every step may read them.
    reads: tuple[type[Artifact], ...] = ()

    def build(self, deployment: Deployment) -> dg.AssetsDefinition:
        plan, part, merge, reads = self.plan, self.part, self.merge, self.reads

        def planned(step: Step, config) -> Iterator[dg.DynamicOutput]:
            for index in range(plan(step, config)):
                yield dg.DynamicOutput(None, mapping_key=str(index))

        def one_part(step: Step, config) -> None:
            part(step, config, int(step.context.get_mapping_key()))

        def op(body: Callable, named: Callable, profile: str, own: type[Artifact] | None, **io) -> dg.OpDefinition:
            compute = _compute(body, self.name, reads, own, self.config, dg.OpExecutionContext)
            pod = deployment.step(profile)
            return dg.op(
                name=named.__name__,
                description=inspect.getdoc(named),
                required_resource_keys={"store", *self.resources},
                tags=pod.pop("op_tags"),  # an op's tags are what an asset's op_tags become
                **pod,
                **io,
            )(compute)

        upstream = {kind.asset: dg.In(dg.Nothing) for kind in reads}
        plan_op = op(planned, plan, self.profile, None, ins=upstream, out=dg.DynamicOut(dg.Nothing))
        part_op = op(
            one_part, part, self.part_profile, None, ins={"planned": dg.In(dg.Nothing)}, out=dg.Out(dg.Nothing)
        )
        merge_op = op(merge, merge, self.profile, self.kind, ins={"parts": dg.In(dg.Nothing)}, out=dg.Out(dg.Nothing))
        names = (plan.__name__, part.__name__, merge.__name__)
        config = dg.ConfigMapping(
            config_fn=lambda value: {name: {"config": value} for name in names},
            config_schema=self.config.to_config_schema(),
        )

        def compose(**inputs):
            return merge_op(parts=plan_op(**inputs).map(lambda planned: part_op(planned=planned)).collect())

        # Dagster reads a graph's inputs from its function's signature
        compose.__signature__ = inspect.Signature(
            [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY) for name in upstream]
        )
        ins = {name: dg.AssetIn(name, dagster_type=dg.Nothing) for name in upstream}
        return dg.graph_asset(name=self.name, ins=ins, config=config, code_version="1", **self.options)(compose)


def fanned_out_asset(
    kind: type[Artifact],
    *,
    plan: Callable,
    part: Callable,
    merge: Callable,
    config: type[SettingsConfig],
    preflight: Check | None = None,
    profile: str = "cpu",
    part_profile: str = "cpu",
    resources: Sequence[str] = (),
    reads: Sequence[type[Artifact]] = (),
    **options,
) -> FannedOutAsset:
    """Declare the asset of `kind` whose work is planned, run in parts and merged (see
    FannedOutAsset), reading the unpartitioned artifact kinds in `reads`; `options` are
    `@dg.graph_asset` options (description, group_name, partitions_def, ...)."""
    register_preflight(kind.asset, config, preflight)
    return FannedOutAsset(
        kind, plan, part, merge, config, profile, part_profile, frozenset(resources), options, tuple(reads)
    )


def artifact_asset(
    kind: type[Artifact],
    *,
    reads: Sequence[Read] = (),
    config: type[SettingsConfig] | None = None,
    preflight: Check | None = None,
    profile: str = "cpu",
    resources: Sequence[str] = (),
    **options,
) -> Callable[[Callable], ArtifactAsset]:
    """Declare the asset that publishes artifacts of `kind`: what it reads, its config (and a
    preflight check of it against the planned run), its pod profile, and any other `@dg.asset`
    option (group_name, kinds, partitions_def, ...). The body is `(step, config)`, or `(step)`
    without config."""

    def decorate(body: Callable) -> ArtifactAsset:
        if config is not None:
            register_preflight(kind.asset, config, preflight)
        return ArtifactAsset(kind, body, tuple(reads), config, profile, frozenset(resources), options)

    return decorate


@dataclass(frozen=True)
class CheckSpec:
    name: str
    description: str
    blocking: bool = False


@dataclass(frozen=True)
class ArtifactCheck:
    """An asset-check recipe: one check (named after its function) or several in one step."""

    on: type[Artifact]
    body: Callable
    reads: tuple[Read, ...]
    specs: tuple[CheckSpec, ...]
    blocking: bool
    config: type[SettingsConfig] | None
    profile: str

    def build(self, deployment: Deployment) -> dg.AssetChecksDefinition:
        name = self.body.__name__
        reads = (self.on, *(_kind(r) for r in self.reads))
        compute = _compute(self.body, name, reads, None, self.config, dg.AssetCheckExecutionContext)
        common = {"required_resource_keys": {"store"}, **deployment.step(self.profile)}
        if not self.specs:
            return dg.asset_check(
                asset=self.on.asset,
                name=name,
                additional_deps=_deps(self.reads),
                blocking=self.blocking,
                description=inspect.getdoc(self.body),
                **common,
            )(compute)
        specs = [
            dg.AssetCheckSpec(
                spec.name,
                asset=self.on.asset,
                additional_deps=_deps(self.reads),
                blocking=spec.blocking,
                description=spec.description,
            )
            for spec in self.specs
        ]
        return dg.multi_asset_check(specs=specs, name=name, description=inspect.getdoc(self.body), **common)(compute)


def artifact_check(
    on: type[Artifact],
    *,
    reads: Sequence[Read] = (),
    specs: Sequence[CheckSpec] = (),
    blocking: bool = False,
    config: type[SettingsConfig] | None = None,
    profile: str = "cpu",
) -> Callable[[Callable], ArtifactCheck]:
    """Declare a check on the asset of `on`: what else it reads, and either the several checks
    one step evaluates (`specs`) or, without them, one check named after the function."""

    def decorate(body: Callable) -> ArtifactCheck:
        return ArtifactCheck(on, body, tuple(reads), tuple(specs), blocking, config, profile)

    return decorate
