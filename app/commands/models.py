"""`parley models …`: see the catalog, install, locate and remove models, and carry them to
a machine without a network in a models archive (export, import).

Each handler returns an exit code and raises ModelError for failures, which the main CLI
prints. Results go to stdout (so scripts can use them); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from engines.errors import ModelError
from engines.model_ref import KINDS
from engines.models import (
    Catalog,
    Progress,
    info,
    load_catalog,
    models_dir,
    own_models,
    pull,
    remove,
    resolve,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `models` and its subcommands; each sets `handler(args, config) -> exit code`."""
    models = subparsers.add_parser(
        "models", help="list, download, locate and remove models",
        description="The model catalog and your installed models.",
    )  # fmt: skip
    sub = models.add_subparsers(dest="models_command", required=True, metavar="COMMAND")

    listing = sub.add_parser("list", help="every known model and whether it is installed")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=_list)

    details = sub.add_parser("info", help="all about one model")
    details.add_argument("name", metavar="NAME")
    details.set_defaults(handler=_info)

    locate = sub.add_parser("path", help="print where a model is (exit 1 if it is missing)")
    locate.add_argument("name", metavar="NAME", help="a catalog name, a path or a URL")
    locate.set_defaults(handler=_path)

    fetch = sub.add_parser("pull", help="download a model (does nothing if it is installed)")
    which = fetch.add_mutually_exclusive_group(required=True)
    which.add_argument("name", metavar="NAME", nargs="?", help="a catalog name or a URL")
    which.add_argument("--defaults", action="store_true", help="the default model of each kind")
    fetch.set_defaults(handler=_pull)

    delete = sub.add_parser("remove", help="delete an installed model")
    delete.add_argument("name", metavar="NAME")
    delete.set_defaults(handler=_remove)

    export = sub.add_parser(
        "export", help="write installed models to an archive, for a machine without a network",
        description="Write installed models to FILE, a tar that `parley models import` reads.",
    )  # fmt: skip
    export.add_argument("--defaults", action="store_true",
                        help="the default model of each kind for this machine")  # fmt: skip
    export.add_argument("names", metavar="NAME", nargs="*", help="a catalog name")
    export.add_argument("file", metavar="FILE", type=Path, help="the archive to write")
    export.set_defaults(handler=_export)

    load = sub.add_parser("import", help="install the models of an archive (no network)")
    load.add_argument("file", metavar="FILE", type=Path, help="an archive `export` wrote")
    load.set_defaults(handler=_import)


def _list(args: argparse.Namespace, _config: object) -> int:
    rows = [info(entry.name) for entry in load_catalog().entries()]
    own = own_models()
    if args.json:
        print(json.dumps(rows + [{"name": ref.name, "kind": ref.kind, "format": ref.format,
                                  "path": str(ref.path), "size": ref.path.stat().st_size,
                                  "installed": True, "own": True} for ref in own], indent=2))
        return 0
    table = [("NAME", "KIND", "FORMAT", "SIZE", "INSTALLED", "LICENCE")]
    for row in rows:
        installed = "damaged" if row["problem"] else "yes" if row["installed"] else "no"
        if row["builtin"]:
            installed = "built in"
        name = row["name"] + (" *" if row["default"] else "")
        table.append((name, row["kind"], row["format"], _size(row), installed, row["license"]))
    widths = [max(len(r[i]) for r in table) for i in range(5)]
    for r in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=False)) + "  " + r[5])
    if own:
        print(f"\nYour own models, in {models_dir()} (use them by name, e.g. --llm NAME):")
        for ref in own:
            print(f"  {ref.name}  {ref.kind}  {ref.format}  {_mb(ref.path.stat().st_size)}")
    print("\n* the default model of its kind.  `parley models pull NAME` installs one.")
    for row in rows:
        if row["default_reason"]:
            print(f"  {row['name']} is the default here: {row['default_reason']}.")
    return 0


def _info(args: argparse.Namespace, _config: object) -> int:
    row = info(args.name)
    status = "built in" if row["builtin"] else row["path"] or "not installed"
    print(f"{row['name']}  ({row['kind']}, {row['format']}{', default' if row['default'] else ''})")
    print(f"  {row['description']}")
    print(f"  licence:   {row['license']}")
    if row["homepage"]:
        print(f"  homepage:  {row['homepage']}")
    print(f"  size:      {_size(row)}")
    print(f"  installed: {status}")
    if row["problem"]:
        print(f"  problem:   {row['problem']}")
    for f in row["files"]:
        size = f"{f['size']:,} bytes" if f["size"] is not None else "size not published"
        print(f"  file {f['name']}: {size}, sha256 {f['sha256'] or 'not published'}")
        for n, source in enumerate(f["sources"], 1):
            label = f"part {n}" if len(f["sources"]) > 1 else "from"
            print(f"    {label}: {source}")
    return 0


def _path(args: argparse.Namespace, _config: object) -> int:
    try:
        ref = resolve(args.name)
    except ModelError as err:
        print(f"parley: {err}", file=sys.stderr)
        return 1
    if ref.format == "webrtcvad":
        print(f"{ref.name} is built into Parley: it has no file.", file=sys.stderr)
    else:
        print(ref.path)
    return 0


def _pull(args: argparse.Namespace, _config: object) -> int:
    catalog = load_catalog()
    names = _defaults(catalog) if args.defaults else [args.name]
    for name in names:
        progress: Progress = _ProgressLine(name, "downloading")
        ref = pull(name, progress=progress, catalog=catalog)
        where = "built in" if ref.format == "webrtcvad" else str(ref.path)
        print(f"{name}: ready ({where})")
    return 0


def _defaults(catalog: Catalog) -> list[str]:
    """The default model of each kind for this machine (its memory decides the LLM)."""
    return [catalog.default(kind).name for kind in KINDS]


def _export(args: argparse.Namespace, _config: object) -> int:
    from engines.models.archive import export_archive  # tarfile only when asked

    catalog = load_catalog()
    names = list(args.names)
    if args.defaults:  # built-in models (webrtcvad) have no files to carry
        names += [n for n in _defaults(catalog) if not catalog.get(n).builtin]
    if not names:
        raise ModelError(
            "Name the models to export, or give --defaults.",
            "For example: `parley models export --defaults parley-models.tar`.",
        )
    path = export_archive(names, args.file, _ProgressLine(args.file.name, "writing"), catalog)
    print(f"{path}: {', '.join(dict.fromkeys(names))} ({_mb(path.stat().st_size)})")
    return 0


def _import(args: argparse.Namespace, _config: object) -> int:
    from engines.models.archive import import_archive  # tarfile only when asked

    installed = import_archive(args.file, _ProgressLine(args.file.name, "importing"))
    for name in installed:
        print(f"{name}: ready ({resolve(name).path})")
    if not installed:
        print(f"{args.file}: every model in it is installed already")
    return 0


def _remove(args: argparse.Namespace, _config: object) -> int:
    removed = remove(args.name)
    print(f"{args.name}: removed" if removed else f"{args.name}: was not installed")
    return 0


def _size(row: dict[str, Any]) -> str:
    if row["builtin"]:
        return "-"
    if row["size"] is not None:
        return _mb(row["size"])
    return f"~{_mb(row['approx_size'])}" if row["approx_size"] else "?"


def _mb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


class _ProgressLine:
    """A one-line progress meter on stderr, redrawn at most a few times a second."""

    def __init__(self, name: str, doing: str) -> None:
        self.name, self.doing = name, doing
        self.shown = 0.0
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int | None) -> None:
        finished = total is not None and done >= total
        now = time.monotonic()
        if not finished and now - self.shown < (0.2 if self.tty else 5.0):
            return
        self.shown = now
        amount = f"{_mb(done)} of {_mb(total)} ({done * 100 // total}%)" if total else _mb(done)
        end = "\n" if finished or not self.tty else ""
        print(f"\r{self.name}: {self.doing} {amount}   ", end=end, file=sys.stderr, flush=True)
