"""Class-folder trees ``root/<split>/<class>/<file>`` (ImageFolder, UCF-101 style).

``split`` is one of :data:`~.base.SPLITS`; ``train`` and ``test`` are required, ``val`` is optional.
Hidden entries (names starting with ``.``) are ignored; anything else out of place is an error, so
nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omnivec2_pipelines.formats.base import REQUIRED_SPLITS, SPLITS, DataError

#: One file of a listing: (split folder, class folder, path).
ClassFile = tuple[str, str, Path]


def visible(folder: Path) -> list[Path]:
    """The entries of ``folder`` whose names do not start with ``.``, sorted."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def list_class_dirs(split_dir: Path, item: str = "image") -> list[Path]:
    """Class folders of one split folder; a stray file or an empty split folder is an error.

    Args:
        split_dir: ``root/<split>``.
        item: What a class folder holds (``"image"``, ``"clip"``), for messages.
    """
    entries = visible(split_dir)
    stray = [p for p in entries if not p.is_dir()]
    if stray:
        raise DataError(f"{stray[0]}: unexpected file directly in split folder {split_dir}; "
                        f"expected only class folders <split>/<class>/<{item}>", reason="invalid")
    if not entries:
        raise DataError(f"{split_dir}: split folder is empty; expected class folders "
                        f"<class>/<{item}> inside it", reason="empty")
    return entries


def check_class_file(path: Path, extensions: Sequence[str], what: str, item: str) -> None:
    """Raise (reason ``invalid``) unless ``path`` is a file with one of ``extensions`` (lower case)."""
    if not (path.is_file() and path.suffix.lower() in extensions):
        raise DataError(f"{path}: not {what} with extension in {list(extensions)} "
                        f"(class folders must contain only {item}s)", reason="invalid")


def list_class_files(class_dir: Path, extensions: Sequence[str] | None = None, what: str = "an image file",
                     item: str = "image") -> list[Path]:
    """Files of one class folder.

    Args:
        class_dir: ``root/<split>/<class>``.
        extensions: Accepted extensions (lower case); another entry is an error. None: any entry
            (the reader checks each file, e.g. as a skippable per-file error).
        what: What an accepted file is (``"an image file"``), for messages.
        item: What a class folder holds, for messages.

    Raises:
        DataError: an entry that is not an accepted file, or an empty class folder.
    """
    entries = visible(class_dir)
    if extensions is not None:
        for p in entries:
            check_class_file(p, extensions, what, item)
    if not entries:
        raise DataError(f"{class_dir}: class folder is empty; expected at least one {item}",
                        reason="empty")
    return entries


def list_tree(root: Path, modality: str, extensions: Sequence[str] | None = None, what: str = "an image file",
              item: str = "image", tree: str = "an ImageFolder tree root/<split>/<class>/<image>") -> list[ClassFile]:
    """Every file of a class-folder tree in reading order (split, class, file name).

    Args:
        root: The tree.
        modality: Modality name, for messages (``<modality>.source.path``).
        extensions, what, item: As for :func:`list_class_files`.
        tree: The expected layout, for messages.

    Raises:
        DataError: ``root`` not a directory, missing train/test split folder, or a layout problem
            (see :func:`list_class_dirs`, :func:`list_class_files`).
    """
    if not root.is_dir():
        raise DataError(f"{modality}.source.path: {root} is not a directory; expected {tree}")
    missing = [s for s in REQUIRED_SPLITS if not (root / s).is_dir()]
    if missing:
        raise DataError(f"{root}: missing split folder(s) {missing}; expected "
                        f"root/train/<class>/..., root/test/<class>/... (val optional)", reason="missing")
    files: list[ClassFile] = []
    for split in SPLITS:
        if (root / split).is_dir():
            for class_dir in list_class_dirs(root / split, item):
                files += [(split, class_dir.name, p) for p in list_class_files(class_dir, extensions, what, item)]
    return files
