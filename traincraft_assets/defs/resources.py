"""Resources: the artifact store and the inbox, configured from core's settings."""

from __future__ import annotations

import dagster as dg

from traincraft_assets.core.inbox import Inbox
from traincraft_assets.core.settings import DEFAULT_INBOX_SETTLE_S, Settings
from traincraft_assets.core.store import ArtifactStore


class StoreResource(dg.ConfigurableResource):
    """The artifact store: a directory (a ReadWriteMany volume on Kubernetes)."""

    root: str

    def store(self) -> ArtifactStore:
        return ArtifactStore(self.root)


class InboxResource(dg.ConfigurableResource):
    """Directory holding one file per data batch; the file name is the partition key."""

    path: str
    settle_s: float = DEFAULT_INBOX_SETTLE_S  # a dropped file is taken once unchanged this long

    def inbox(self) -> Inbox:
        return Inbox(self.path, self.settle_s)


def default_resources(settings: Settings) -> dict:
    """The store and inbox the settings name."""
    return {
        "store": StoreResource(root=str(settings.store)),
        "inbox": InboxResource(path=str(settings.inbox), settle_s=settings.inbox_settle_s),
    }
