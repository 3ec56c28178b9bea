"""Models, apart from the engines that run them: the catalog, finding and installing models."""

from engines.models.catalog import (
    DEFAULT_CATALOG,
    FORMAT_KINDS,
    Catalog,
    CatalogEntry,
    CatalogFile,
    DefaultChoice,
    HubSource,
    PypiSource,
    load_catalog,
    total_memory,
)
from engines.models.install import Progress, info, pull, remove
from engines.models.resolve import (
    CorruptModelError,
    detect_format,
    for_this_machine,
    own_models,
    reinstall_hint,
    resolve,
)
from engines.models.sources import DownloadCancelled
from engines.models.store import MARKER, models_dir

__all__ = [
    "DEFAULT_CATALOG",
    "FORMAT_KINDS",
    "MARKER",
    "Catalog",
    "CatalogEntry",
    "CatalogFile",
    "CorruptModelError",
    "DefaultChoice",
    "DownloadCancelled",
    "HubSource",
    "Progress",
    "PypiSource",
    "detect_format",
    "for_this_machine",
    "info",
    "load_catalog",
    "models_dir",
    "own_models",
    "pull",
    "reinstall_hint",
    "remove",
    "resolve",
    "total_memory",
]
