"""Resources: the artifact store and the inbox, configured from core's settings."""

from __future__ import annotations

import dagster as dg

from traincraft_assets.core.inbox import Inbox
from traincraft_assets.core.settings import Settings, load_settings
from traincraft_assets.core.store import ArtifactStore


class StoreResource(dg.ConfigurableResource):
    """The artifact store: a directory (a ReadWriteMany volume on Kubernetes)."""

    root: str

    def store(self) -> ArtifactStore:
        return ArtifactStore(self.root)


class InboxResource(dg.ConfigurableResource):
    """Directory holding one file per data batch; the file name is the partition key."""

    path: str

    def inbox(self) -> Inbox:
        return Inbox(self.path)


def default_resources(settings: Settings | None = None) -> dict:
    settings = settings or load_settings()
    return {
        "store": StoreResource(root=str(settings.store)),
        "inbox": InboxResource(path=str(settings.inbox)),
    }
