"""Models, apart from the engines that run them: the catalog, finding and installing models."""

from engines.models.catalog import (
    DEFAULT_CATALOG,
    FORMAT_KINDS,
    Catalog,
    CatalogEntry,
    CatalogFile,
    HubSource,
    PypiSource,
    load_catalog,
)
from engines.models.install import Progress, info, pull, remove
from engines.models.resolve import CorruptModelError, detect_format, resolve
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
    "DownloadCancelled",
    "HubSource",
    "Progress",
    "PypiSource",
    "detect_format",
    "info",
    "load_catalog",
    "models_dir",
    "pull",
    "remove",
    "resolve",
]
