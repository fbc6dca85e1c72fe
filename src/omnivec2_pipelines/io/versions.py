"""The versions Kedro's dataset versioning keeps (``versioned: true``): list them, delete all but the newest.

A versioned dataset at ``<path>`` saves each run to ``<path>/<version>/<name of path>`` (``<version>`` is the
run's timestamp, e.g. ``2026-12-02T06.10.11.123Z``, so names sort by age). Nothing deletes old versions on
its own; ``python -m omnivec2_pipelines.io.versions --keep N [folder ...]`` (``make prune-runs KEEP=N``)
keeps the newest N of every versioned dataset under the folders (default ``data``).
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

#: Kedro's version names (``kedro.io.core.generate_timestamp``): ``YYYY-MM-DDThh.mm.ss.sssZ``.
VERSION = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}\.\d{2}\.\d{2}\.\d{3}Z")


def versions(root: str | Path) -> list[str]:
    """The versions saved under the versioned dataset ``root``, oldest first ([] when none)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(d.name for d in root.iterdir() if VERSION.fullmatch(d.name) and (d / root.name).exists())


def versioned_datasets(folder: str | Path) -> list[Path]:
    """Every versioned dataset (a folder holding ``<version>/<its own name>``) under ``folder``."""
    found = set()
    for entry in Path(folder).rglob("*"):
        if entry.is_dir() and VERSION.fullmatch(entry.name) and (entry / entry.parent.name).exists():
            found.add(entry.parent)
    return sorted(found)


def prune(root: str | Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` versions of the versioned dataset ``root``; returns what was deleted."""
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ValueError(f"keep must be an integer >= 1 (the newest versions to keep), got {keep!r}")
    old = versions(root)[:-keep]
    for v in old:
        shutil.rmtree(Path(root) / v)
    return [Path(root) / v for v in old]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Delete all but the newest versions of every versioned dataset.")
    parser.add_argument("--keep", type=int, required=True, help="newest versions to keep per dataset (>= 1)")
    parser.add_argument("--dry-run", action="store_true", help="only list what would be deleted")
    parser.add_argument("folders", nargs="*", default=["data"])
    args = parser.parse_args(argv)
    if args.keep < 1:
        parser.error(f"--keep must be >= 1, got {args.keep}")
    for folder in args.folders:
        for root in versioned_datasets(folder):
            old = versions(root)[:-args.keep]
            if not args.dry_run:
                prune(root, args.keep)
            for v in old:
                print(f"{'would delete' if args.dry_run else 'deleted'} {root / v}")


if __name__ == "__main__":
    main()
