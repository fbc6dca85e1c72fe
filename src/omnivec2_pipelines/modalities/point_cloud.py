"""Point-cloud modality: meshes / point files / part-labelled point tables → ``(N, P, 3)`` clouds.

Two layouts (``source.format``):

``segmentation_txt`` (S3DIS / ShapeNet-part style; the default)::

    root/classes.txt                       optional: part class names, line i = part label i
    root/<split>/<shape>/<name>.txt        rows "x y z [more columns...] label"
    root/<split>/<name>.txt                (alternative without shape folders)

    split in {train, val, test}; train and test are required, val is optional.

  With shape folders every sample also has a shape label (its folder), giving the tasks
  ``classification`` (shape) and ``segmentation`` (part label per point); without them only
  ``segmentation``. ``source.label_column`` picks the part-label column (default ``-1``, the
  last); x, y, z are columns 0..2. Without ``classes.txt`` the part classes are
  ``part_0..part_<max label>``. Entries of ``root`` other than the split folders and
  ``classes.txt`` are ignored (the embedded default data keeps its ModelNet meshes there).

``modelnet`` (ModelNet10/40 style)::

    root/<class>/<split>/<name>.off|.ply|.xyz

  Meshes (``.off``, ``.ply`` with faces) are read with trimesh and ``source.n_points`` points
  are sampled on their surface with a seed derived from ``source.seed`` and the file path
  (deterministic); ``.ply`` point clouds and ``.xyz`` files (one point per line, first three
  columns) are used as they are. Files directly in ``root`` other than mesh/point files
  (e.g. a README) are ignored. Task: ``classification``.

Fixed point counts, centring and scaling are tokenization params (:meth:`PointCloudModality.tokenize`).

Embedded default data: GENERATED composite part shapes and primitive meshes
(:mod:`omnivec2_pipelines.sample_data.point_cloud`).
"""

from __future__ import annotations

import io
import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from omnivec2_pipelines.checks import int_param, pos_int
from omnivec2_pipelines.formats.class_folders import visible
from omnivec2_pipelines.modalities._shared.images import check_meta_kind
from omnivec2_pipelines.modalities._shared.inputs import input_items, input_rows, require_rows
from omnivec2_pipelines.modalities.base import (
    REQUIRED_SPLITS,
    SPLITS,
    ArrayBundle,
    DataError,
    ErrorPolicy,
    Modality,
    TaskSpec,
    assign_val_split,
    check_source,
    register,
    table_class_names,
)

#: Extensions of the ``modelnet`` layout: meshes (trimesh) and point files.
MODELNET_EXTENSIONS: tuple[str, ...] = (".off", ".ply", ".xyz")
#: Surface points sampled per mesh (``modelnet`` ``source.n_points`` default, and meshes of ``read_inputs``).
DEFAULT_MESH_POINTS: int = 1024
#: What an in-memory point-cloud input may be, for messages.
CLOUD_OBJECTS = "a finite real array (P, 3) of points"


# ---------------------------------------------------------------------------------------------
# file readers
# ---------------------------------------------------------------------------------------------
def _check_cloud(points: np.ndarray, path: Path) -> np.ndarray:
    """Validate a ``(n, 3)`` cloud: non-empty, finite, not all one point."""
    if points.shape[0] == 0:
        raise DataError(f"{path}: no points; expected at least one point", reason="degenerate")
    if not np.isfinite(points).all():
        row = int(np.flatnonzero(~np.isfinite(points).all(axis=1))[0])
        raise DataError(f"{path}: point {row} has NaN/inf coordinates", reason="nan")
    if float(np.ptp(points, axis=0).max()) == 0.0:
        raise DataError(f"{path}: all {points.shape[0]} points are identical; expected a cloud "
                        f"with spatial extent", reason="degenerate")
    return points


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e}); expected a text file", reason="encoding") from e
    except OSError as e:
        raise DataError(f"{path}: cannot read ({type(e).__name__}: {e})", reason="corrupt") from e


def _numeric_rows(path: Path, min_cols: int, what: str) -> tuple[np.ndarray, list[int]]:
    """Parse whitespace-separated numeric rows (``#`` comments and blank lines skipped).

    Returns:
        ``(values (n, C) float64, line numbers)``.

    Raises:
        DataError: naming ``file:line`` for a short/ragged row or a non-numeric value.
    """
    rows: list[list[str]] = []
    lines: list[int] = []
    for lineno, raw in enumerate(_read_text(path).splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        tokens = line.replace(",", " ").split()
        if len(tokens) < min_cols:
            raise DataError(f"{path}:{lineno}: {len(tokens)} column(s); expected {what}",
                            reason="shape")
        if rows and len(tokens) != len(rows[0]):
            raise DataError(f"{path}:{lineno}: {len(tokens)} columns but line {lines[0]} has "
                            f"{len(rows[0])}; expected the same columns on every line",
                            reason="shape")
        rows.append(tokens)
        lines.append(lineno)
    if not rows:
        raise DataError(f"{path}: no data rows; expected {what}", reason="empty")
    try:
        return np.array(rows, dtype=np.float64), lines
    except ValueError:
        for tokens, lineno in zip(rows, lines):
            for t in tokens:
                try:
                    float(t)
                except ValueError:
                    raise DataError(f"{path}:{lineno}: non-numeric value {t!r}; expected {what}",
                                    reason="corrupt") from None
        raise  # pragma: no cover  (np.array failed but every token parses)


def read_xyz(path: Path) -> np.ndarray:
    """Read an ``.xyz`` point file: one point per line, ``x y z`` first (extra columns ignored).

    Returns:
        float64 ``(n, 3)``.
    """
    values, _ = _numeric_rows(Path(path), 3, "'x y z' (one point per line)")
    return _check_cloud(values[:, :3], path)


def _check_off(path: Path, text: str) -> None:
    """Check an OFF header and that the file holds all declared vertex and face lines."""
    lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines or not lines[0].upper().startswith("OFF"):
        raise DataError(f"{path}: not an OFF file (first line {lines[0][:30] if lines else ''!r}); "
                        f"expected 'OFF' then 'n_vertices n_faces n_edges'", reason="corrupt")
    head = lines[0][3:].split()  # ModelNet quirk: counts glued to the 'OFF' line
    body = lines[1:]
    if not head:
        if not body:
            raise DataError(f"{path}: OFF file ends after the header", reason="truncated")
        head, body = body[0].split(), body[1:]
    try:
        nv, nf = int(head[0]), int(head[1])
    except (IndexError, ValueError):
        raise DataError(f"{path}: bad OFF counts line {' '.join(head)!r}; expected "
                        f"'n_vertices n_faces n_edges'", reason="corrupt") from None
    if nv <= 0 or nf <= 0:
        raise DataError(f"{path}: OFF mesh has {nv} vertices and {nf} faces; expected a mesh "
                        f"with faces", reason="degenerate")
    if len(body) < nv + nf:
        raise DataError(f"{path}: OFF file declares {nv} vertices + {nf} faces but has only "
                        f"{len(body)} data lines", reason="truncated")


def load_points(path: Path, n_points: int, seed: list[int]) -> np.ndarray:
    """Points of one ``modelnet`` layout file.

    Meshes (``.off``; ``.ply`` with faces) are loaded with trimesh and ``n_points`` points are
    sampled on the surface with ``trimesh.sample.sample_surface(seed=seed)``; point clouds
    (``.ply`` without faces, ``.xyz``) are returned as they are.

    Returns:
        float32 ``(n, 3)``.

    Raises:
        DataError: unreadable/truncated file (``corrupt``/``truncated``), NaN/inf vertices
            (``nan``), no faces or points, zero surface area or all points identical
            (``degenerate``).
    """
    import trimesh

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".xyz":
        return read_xyz(path).astype(np.float32)
    try:
        if suffix == ".off":
            text = _read_text(path)
            _check_off(path, text)
            obj = trimesh.load(io.BytesIO(text.encode("utf-8")), file_type="off", process=False)
        else:
            obj = trimesh.load(str(path), file_type=suffix.lstrip("."), process=False)
    except DataError:
        raise
    except Exception as e:  # trimesh raises many types on bad input
        raise DataError(f"{path}: unreadable or corrupt {suffix} file ({type(e).__name__}: {e})",
                        reason="corrupt") from e
    if isinstance(obj, trimesh.Scene):
        geoms = list(obj.geometry.values())
        meshes = [g for g in geoms if isinstance(g, trimesh.Trimesh)]
        if meshes and len(meshes) == len(geoms):
            obj = trimesh.util.concatenate(meshes)
        elif geoms and all(isinstance(g, trimesh.PointCloud) for g in geoms):
            obj = trimesh.PointCloud(np.concatenate([g.vertices for g in geoms]))
        else:
            raise DataError(f"{path}: scene with {len(geoms)} geometries of mixed/unsupported "
                            f"types; expected one mesh or point cloud", reason="degenerate")
    vertices = np.asarray(getattr(obj, "vertices", np.zeros((0, 3))), dtype=np.float64)
    if isinstance(obj, trimesh.PointCloud):
        return _check_cloud(vertices.reshape(-1, 3), path).astype(np.float32)
    if not isinstance(obj, trimesh.Trimesh):
        raise DataError(f"{path}: loaded as {type(obj).__name__}; expected a mesh or point cloud",
                        reason="corrupt")
    if vertices.size and not np.isfinite(vertices).all():
        row = int(np.flatnonzero(~np.isfinite(vertices).all(axis=1))[0])
        raise DataError(f"{path}: vertex {row} has NaN/inf coordinates", reason="nan")
    if len(obj.faces) == 0 or len(vertices) == 0:
        raise DataError(f"{path}: mesh has {len(vertices)} vertices and {len(obj.faces)} faces; "
                        f"expected a mesh with faces", reason="degenerate")
    if not float(obj.area) > 0.0:
        raise DataError(f"{path}: mesh has zero surface area; expected a non-degenerate mesh",
                        reason="degenerate")
    points, _ = trimesh.sample.sample_surface(obj, int(n_points), seed=seed)
    return _check_cloud(np.asarray(points, dtype=np.float64), path).astype(np.float32)


def read_segmentation_txt(path: Path, label_column: int = -1,
                          n_parts: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read one part-labelled point table: rows ``x y z [...] label``.

    Args:
        path: The ``.txt`` file.
        label_column: Column of the part label (negative counts from the end); not 0..2.
        n_parts: Number of part classes when ``classes.txt`` fixes it (labels must be below).

    Returns:
        ``(points float32 (n, 3), labels int64 (n,))``.

    Raises:
        DataError: ``file:line`` for ragged/short rows or non-numeric values, bad
            ``label_column``, non-integer/negative/out-of-range labels, NaN/inf values,
            degenerate clouds.
    """
    path = Path(path)
    values, lines = _numeric_rows(path, 4, "'x y z [...] label' (at least 4 columns)")
    n_cols = values.shape[1]
    col = label_column + n_cols if label_column < 0 else label_column
    if not 3 <= col < n_cols:
        raise DataError(f"point_cloud.source.label_column={label_column} does not name a label "
                        f"column of {path} ({n_cols} columns, x y z are columns 0..2)",
                        reason="shape")
    labels = values[:, col]
    bad = ~np.isfinite(labels)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}:{lines[i]}: part label is NaN/inf", reason="nan")
    bad = (labels != np.round(labels)) | (labels < 0) | (
        labels >= n_parts if n_parts is not None else False)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        rng = f"0..{n_parts - 1} (classes.txt)" if n_parts is not None else ">= 0"
        raise DataError(f"{path}:{lines[i]}: part label {float(labels[i])!r} is not an integer in {rng}",
                        reason="invalid")
    pts = values[:, :3]
    bad = ~np.isfinite(pts).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}:{lines[i]}: NaN/inf coordinates", reason="nan")
    _check_cloud(pts, path)
    return pts.astype(np.float32), labels.astype(np.int64)


def _read_classes(path: Path) -> list[str] | None:
    """Part class names from ``classes.txt`` (one per line), or None when absent."""
    if not path.is_file():
        return None
    names = [ln.strip() for ln in _read_text(path).splitlines() if ln.strip()]
    if not names:
        raise DataError(f"{path}: no class names; expected one part class name per line")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"{path}: duplicate class name(s) {dup}")
    return names


def _file_seed(seed: int, rel: str) -> list[int]:
    """Per-file seed: independent of file order, stable across runs and machines."""
    return [int(seed), zlib.crc32(rel.encode("utf-8"))]


# ---------------------------------------------------------------------------------------------
# tokenization helpers
# ---------------------------------------------------------------------------------------------
def farthest_point_indices(points: np.ndarray, m: int) -> np.ndarray:
    """Deterministic farthest point sampling of ``m`` indices from ``points`` (B, n, 3).

    Starts at index 0; ties go to the lowest index. Returns int64 ``(B, m)``.
    """
    b, n, _ = points.shape
    idx = np.zeros((b, m), dtype=np.int64)
    dist = np.full((b, n), np.inf)
    rows = np.arange(b)
    px, py, pz = (np.ascontiguousarray(points[:, :, a]) for a in range(3))  # (B, n) each
    for i in range(1, m):
        j = idx[:, i - 1]
        d = (px - px[rows, j, None]) ** 2 + (py - py[rows, j, None]) ** 2 + (pz - pz[rows, j, None]) ** 2
        np.minimum(dist, d, out=dist)
        idx[:, i] = dist.argmax(1)
    return idx


def normalize_unit_sphere(points: np.ndarray) -> np.ndarray:
    """Centre a ``(n, 3)`` cloud on its centroid and scale it into the unit sphere."""
    centred = points - points.mean(axis=0, keepdims=True)
    scale = float(np.sqrt((centred ** 2).sum(1)).max())
    return centred / max(scale, 1e-12)


def cloud_descriptors(x: np.ndarray) -> np.ndarray:
    """Global shape descriptors of normalised clouds ``(N, P, 3)`` → ``(N, 62)`` float32.

    Radial histogram (16 bins of the distance to the centroid), D2 shape distribution
    (16 bins of pairwise distances, up to 256 points), sorted covariance eigenvalues (3),
    per-axis coordinate histograms (3 x 9) -- the classical baseline's features.
    """
    n, p, _ = x.shape
    sub = x[:, np.linspace(0, p - 1, min(p, 256)).astype(int)]
    out = []
    for start in range(0, n, 64):
        pts = sub[start:start + 64].astype(np.float64)  # (b, s, 3)
        r = np.sqrt((pts ** 2).sum(-1))
        radial = np.stack([np.histogram(v, bins=16, range=(0, 1))[0] for v in r])
        d = np.sqrt(((pts[:, :, None] - pts[:, None]) ** 2).sum(-1)).reshape(len(pts), -1)
        d2 = np.stack([np.histogram(v, bins=16, range=(0, 2))[0] for v in d])
        cov = np.einsum("bsi,bsj->bij", pts - pts.mean(1, keepdims=True), pts - pts.mean(1, keepdims=True))
        eig = np.sort(np.linalg.eigvalsh(cov / pts.shape[1]), axis=1)[:, ::-1]
        axes = np.concatenate([np.stack([np.histogram(v, bins=9, range=(-1, 1))[0] for v in pts[:, :, a]])
                               for a in range(3)], axis=1)
        s = float(pts.shape[1])
        out.append(np.concatenate([radial / s, d2 / d.shape[1], eig, axes / s], axis=1))
    return np.concatenate(out).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# the modality
# ---------------------------------------------------------------------------------------------
class PointCloudModality(Modality):
    """3D point clouds: shape classification and per-point part segmentation."""

    name = "point_cloud"
    formats = ("modelnet", "segmentation_txt")
    source_keys = ("label_column", "n_points")
    sample_data_keys = ("shapes_per_class", "points_per_shape", "meshes_per_class", "modelnet_subdir",
                        "test_fraction", "seed")
    tokenization_keys = ("n_points", "n_groups", "group_size", "subsample", "seed", "channels")
    task_names = ("classification", "segmentation")

    def make_sample_data(self, root: Path, params: dict[str, Any]) -> dict[str, Any]:
        """Write GENERATED (trimesh) point-cloud data; deterministic for fixed params (see
        :func:`omnivec2_pipelines.sample_data.point_cloud.make_sample_data`)."""
        from omnivec2_pipelines.sample_data.point_cloud import make_sample_data

        return make_sample_data(root, params)

    # -- reading ----------------------------------------------------------------------------
    def read(self, source: dict[str, Any]) -> pd.DataFrame:
        """Read a ``modelnet`` or ``segmentation_txt`` tree into the canonical table.

        Source params: ``val_fraction`` (0.1), ``seed`` (0), ``on_error`` (raise|skip);
        ``modelnet``: ``n_points`` (1024, surface samples per mesh);
        ``segmentation_txt``: ``label_column`` (-1).

        Payload columns: ``points`` (float32, flattened ``(n, 3)`` row-major), ``n_points``;
        ``segmentation_txt`` adds ``point_labels`` (int64 ``(n,)``) and ``part_names`` (JSON
        list of the part class names). ``label``/``label_name`` are the shape class (sorted
        folder names); -1/"" for ``segmentation_txt`` without shape folders.

        Raises:
            DataError: missing path/split/files, bad file (see :func:`load_points`,
                :func:`read_segmentation_txt`), stray files, or every file skipped.
        """
        fmt, root = check_source(source, self)
        if not root.is_dir():
            raise DataError(f"point_cloud.source.path: {root} is not a directory; expected a "
                            f"{fmt!r} tree")
        policy = ErrorPolicy(source, self.name)
        seed = int_param(source, "seed", "point_cloud.source", 0)
        if fmt == "modelnet":
            table = self._read_modelnet(root, source, policy, seed)
        else:
            table = self._read_segmentation(root, source, policy)
        table = assign_val_split(table, source.get("val_fraction", 0.1), seed)
        return policy.attach(table)

    def _read_modelnet(self, root: Path, source: dict[str, Any], policy: ErrorPolicy,
                       seed: int) -> pd.DataFrame:
        n_points = int_param(source, "n_points", "point_cloud.source", DEFAULT_MESH_POINTS)
        if n_points <= 0:
            raise DataError(f"point_cloud.source.n_points must be a positive int, got {n_points}")
        entries = visible(root)
        loose = [p for p in entries if p.is_file() and p.suffix.lower() in MODELNET_EXTENSIONS]
        if loose:
            raise DataError(f"{loose[0]}: shape file directly in {root}; expected the ModelNet "
                            f"layout root/<class>/<split>/<name>{{.off,.ply,.xyz}}")
        class_dirs = [p for p in entries if p.is_dir()]
        if not class_dirs:
            raise DataError(f"{root}: no class folders; expected the ModelNet layout "
                            f"root/<class>/<split>/<name>.off", reason="empty")
        files: list[tuple[str, str, Path]] = []  # (split, class, path)
        for cdir in class_dirs:
            subs = visible(cdir)
            bad = [p for p in subs if not (p.is_dir() and p.name in SPLITS)]
            if bad:
                raise DataError(f"{bad[0]}: unexpected entry in class folder {cdir}; expected only "
                                f"split folders {list(SPLITS)}")
            if not subs:
                raise DataError(f"{cdir}: class folder is empty; expected split folders "
                                f"{list(SPLITS)}", reason="empty")
            for sdir in subs:
                shapes = visible(sdir)
                bad = [p for p in shapes if not (p.is_file() and p.suffix.lower() in MODELNET_EXTENSIONS)]
                if bad:
                    raise DataError(f"{bad[0]}: not a shape file with extension in "
                                    f"{list(MODELNET_EXTENSIONS)}")
                if not shapes:
                    raise DataError(f"{sdir}: split folder is empty; expected shape files",
                                    reason="empty")
                files += [(sdir.name, cdir.name, p) for p in shapes]
        present = {s for s, _, _ in files}
        missing = [s for s in REQUIRED_SPLITS if s not in present]
        if missing:
            raise DataError(f"{root}: no files for split(s) {missing}; expected "
                            f"root/<class>/train/... and root/<class>/test/...", reason="missing")
        rows: list[dict[str, Any]] = []
        for split, cls, path in files:
            rel = path.relative_to(root).as_posix()
            pts = policy.call(path, load_points, path, n_points, _file_seed(seed, rel))
            if pts is None:
                continue
            rows.append({"sample_id": path.relative_to(root).with_suffix("").as_posix(),
                         "source_file": rel, "label_name": cls, "split": split,
                         "points": pts.reshape(-1), "n_points": int(pts.shape[0])})
        return self._finish(rows, root, ("train", "test"))

    def _read_segmentation(self, root: Path, source: dict[str, Any], policy: ErrorPolicy) -> pd.DataFrame:
        label_column = int_param(source, "label_column", "point_cloud.source", -1)
        if 0 <= label_column <= 2:
            raise DataError(f"point_cloud.source.label_column={label_column} names a coordinate "
                            f"column (x y z are 0..2); expected 3.. or a negative index")
        names = _read_classes(root / "classes.txt")
        missing = [s for s in REQUIRED_SPLITS if not (root / s).is_dir()]
        if missing:
            raise DataError(f"{root}: missing split folder(s) {missing}; expected "
                            f"root/train/..., root/test/... (val optional)", reason="missing")
        files: list[tuple[str, str, Path]] = []  # (split, shape or "", path)
        modes: set[bool] = set()
        for split in SPLITS:
            sdir = root / split
            if not sdir.is_dir():
                continue
            entries = visible(sdir)
            if not entries:
                raise DataError(f"{sdir}: split folder is empty; expected <shape>/<name>.txt or "
                                f"<name>.txt files", reason="empty")
            dirs = [p for p in entries if p.is_dir()]
            if dirs and len(dirs) != len(entries):
                stray = next(p for p in entries if not p.is_dir())
                raise DataError(f"{stray}: file next to shape folders in {sdir}; expected either "
                                f"only <shape>/ folders or only .txt files")
            modes.add(bool(dirs))
            groups = [(d.name, visible(d), d) for d in dirs] if dirs else [("", entries, sdir)]
            for shape, items, folder in groups:
                if not items:
                    raise DataError(f"{folder}: shape folder is empty; expected .txt files",
                                    reason="empty")
                bad = [p for p in items if not (p.is_file() and p.suffix.lower() == ".txt")]
                if bad:
                    raise DataError(f"{bad[0]}: not a .txt point table (expected rows "
                                    f"'x y z [...] label')")
                files += [(split, shape, p) for p in items]
        if len(modes) > 1:
            raise DataError(f"{root}: some split folders hold <shape>/ folders and others .txt "
                            f"files directly; expected the same layout in every split")
        n_parts = len(names) if names is not None else None
        rows: list[dict[str, Any]] = []
        for split, shape, path in files:
            got = policy.call(path, read_segmentation_txt, path, label_column, n_parts)
            if got is None:
                continue
            pts, lab = got
            rel = path.relative_to(root)
            rows.append({"sample_id": rel.with_suffix("").as_posix(), "source_file": rel.as_posix(),
                         "label_name": shape, "split": split, "points": pts.reshape(-1),
                         "n_points": int(pts.shape[0]), "point_labels": lab})
        if rows and names is None:
            k = int(max(int(r["point_labels"].max()) for r in rows)) + 1
            names = [f"part_{i}" for i in range(k)]
        part_json = json.dumps(names)
        for r in rows:
            r["part_names"] = part_json
        return self._finish(rows, root, REQUIRED_SPLITS)

    @staticmethod
    def _finish(rows: list[dict[str, Any]], root: Path, required: tuple[str, ...]) -> pd.DataFrame:
        """Labels from sorted shape names (-1 when unlabelled), required splits still present."""
        if not rows:
            raise DataError(f"{root}: every file was skipped (on_error: skip); nothing to read",
                            reason="empty")
        present = {r["split"] for r in rows}
        gone = [s for s in required if s not in present]
        if gone:
            raise DataError(f"{root}: no readable files left in split(s) {gone} (the others were "
                            f"skipped)", reason="empty")
        shapes = sorted({r["label_name"] for r in rows if r["label_name"]})
        label_of = {c: i for i, c in enumerate(shapes)}
        for r in rows:
            r["label"] = label_of.get(r["label_name"], -1)
        table = pd.DataFrame(rows)
        front = ["sample_id", "source_file", "label", "label_name", "split"]
        table = table[front + [c for c in table.columns if c not in front]]
        return table.astype({"label": "int64", "n_points": "int64"})

    # -- tokenization -----------------------------------------------------------------------
    def tokenize(self, table: pd.DataFrame, params: dict[str, Any]) -> ArrayBundle:
        """Fixed-size, unit-sphere point clouds plus targets.

        Every cloud is centred on its centroid and scaled so its farthest point has norm 1
        (per cloud, from all its points), then brought to ``n_points`` points: farthest point
        sampling (``subsample: fps``, deterministic, starting at the first point) or a seeded
        random subset (``subsample: random``) when larger; repeated cyclically when smaller.

        Args:
            table: Canonical point-cloud table (see :meth:`read`).
            params: ``n_points`` P, ``n_groups`` G (<= P), ``group_size`` k (<= P), optional
                ``subsample`` (``fps``|``random``, default ``fps``), ``seed`` (0), ``channels``
                (mini-PointNet widths ``[c1, c2, c3]``, default ``[32, 64, 64]``).

        Returns:
            Per split ``x`` float32 ``(N, P, 3)``; ``y.classification`` int64 ``(N,)`` when the
            table has shape labels; ``y.segmentation`` int64 ``(N, P)`` when it has point labels.
            Tokenizer ``point_groups``.

        Raises:
            DataError: bad params (naming ``point_cloud.tokenization.<key>``), no train rows,
                mixed labelled/unlabelled rows, or inconsistent part class names.
        """
        p = pos_int(params, "n_points", "point_cloud.tokenization")
        g = pos_int(params, "n_groups", "point_cloud.tokenization")
        k = pos_int(params, "group_size", "point_cloud.tokenization")
        if g > p:
            raise DataError(f"point_cloud.tokenization.n_groups={g} must be <= "
                            f"point_cloud.tokenization.n_points={p}")
        if k > p:
            raise DataError(f"point_cloud.tokenization.group_size={k} must be <= "
                            f"point_cloud.tokenization.n_points={p}")
        mode = params.get("subsample", "fps")
        if mode not in ("fps", "random"):
            raise DataError(f"point_cloud.tokenization.subsample={mode!r}; expected 'fps' or 'random'")
        seed = int_param(params, "seed", "point_cloud.tokenization", 0)
        channels = params.get("channels", [32, 64, 64])
        if (not isinstance(channels, (list, tuple)) or len(channels) != 3
                or not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) and c > 0
                           for c in channels)):
            raise DataError(f"point_cloud.tokenization.channels must be three positive ints "
                            f"[c1, c2, c3], got {channels!r}")
        if not (table["split"] == "train").any():
            raise DataError("point_cloud table has no 'train' rows; the part classes of the "
                            "segmentation task and its per-class parts come from the train split")
        labelled = table["label"].to_numpy() >= 0
        if labelled.any() and not labelled.all():
            raise DataError("point_cloud table mixes rows with and without a shape label "
                            "(label -1); expected all or none")
        has_cls = bool(labelled.all())
        has_seg = "point_labels" in table.columns
        if not has_cls and not has_seg:
            raise DataError("point_cloud table has neither shape labels nor point labels; "
                            "nothing to learn")
        part_names: list[str] = []
        if has_seg:
            uniq = table["part_names"].unique()
            if len(uniq) != 1:
                raise DataError(f"point_cloud table has {len(uniq)} different part class lists; "
                                f"expected one")
            part_names = list(json.loads(uniq[0]))
        arrays: dict[str, np.ndarray] = {}
        splits: dict[str, int] = {}
        for split in SPLITS:
            part = table[table["split"] == split]
            if not len(part):
                continue
            xs, ys = _fixed_clouds(part, p, mode, int(seed), has_seg)
            arrays[f"{split}.x"] = xs  # (N, P, 3)
            if has_cls:
                arrays[f"{split}.y.classification"] = part["label"].to_numpy(dtype=np.int64)
            if has_seg:
                seg = ys  # (N, P)
                if seg.size and (seg.min() < 0 or seg.max() >= len(part_names)):
                    raise DataError(f"point_cloud table: point label {int(seg.max())} is outside "
                                    f"the {len(part_names)} part classes")
                arrays[f"{split}.y.segmentation"] = seg
            splits[split] = int(len(part))
        tasks: dict[str, Any] = {}
        meta: dict[str, Any] = {}
        if has_cls:
            class_names = table_class_names(table)
            tasks["classification"] = TaskSpec(
                name="classification", kind="classification", input_key="x",
                target_key="y.classification", out_dim=len(class_names),
                out_shape=(len(class_names),), class_names=class_names).to_dict()
        if has_seg:
            tasks["segmentation"] = TaskSpec(
                name="segmentation", kind="segmentation", input_key="x", target_key="y.segmentation",
                out_dim=len(part_names), out_shape=(p,), class_names=tuple(part_names)).to_dict()
            meta["segmentation"] = {"part_names": part_names}
        meta = {
            "modality": self.name,
            "tokenizer": {"kind": "point_groups", "n_points": p, "n_groups": g, "group_size": k,
                          "channels": [int(c) for c in channels]},
            "pretrain_input_key": "x",
            "tasks": tasks,
            "splits": splits,
            "normalization": {"kind": "per_cloud_unit_sphere",
                              "formula": "(p - mean(p)) / max_i ||p_i - mean(p)||, per cloud, "
                                         "from all its points (no dataset statistics)"},
            "sampling": {"subsample": mode, "seed": int(seed), "pad": "cyclic repeat"},
            **meta,
        }
        return ArrayBundle(arrays=arrays, meta=meta)

    def preprocess(self, table: pd.DataFrame, meta: dict[str, Any]) -> dict[str, np.ndarray]:
        """A bundle's cloud preparation (per-cloud unit sphere, then ``tokenizer.n_points`` points as
        ``meta["sampling"]`` says) applied to point rows: ``{"x": (N, P, 3) float32}``, as :meth:`tokenize`
        makes them. FPS is deterministic per cloud; the ``random`` subset is seeded by ``sampling.seed``
        and the row's ``sample_id``, so a row gives the same points wherever it comes from.

        Raises:
            DataError: a meta of another modality, or a row whose coordinates do not fit ``n_points``.
        """
        tok = check_meta_kind(meta, "point_groups", self.name)
        require_rows(table, self.name)
        sampling = meta["sampling"]
        x, _ = _fixed_clouds(table, int(tok["n_points"]), str(sampling["subsample"]), int(sampling["seed"]),
                             False)
        return {"x": x}

    def read_inputs(self, inputs: Any) -> pd.DataFrame:
        """Raw clouds → point rows (``id``, ``sample_id``, ``source_file``, ``points``, ``n_points``) for
        :meth:`preprocess`.

        ``.txt`` (segmentation tables; the label column is ignored) and ``.xyz`` files give their points
        (x, y, z = the first three columns, float32 as :meth:`read` keeps them); meshes (``.off``, ``.ply``)
        are sampled as the ``modelnet`` reader samples them (:func:`load_points`, :data:`DEFAULT_MESH_POINTS`
        points, seed from ``source.seed`` 0 and the path ``<class>/<split>/<name>`` when the file lies in
        a ModelNet tree, else its name); arrays ``(P, 3)`` are used as they are (ids ``"0"``, ``"1"``, ...).

        Raises:
            DataError: naming an input that is missing, not a point/mesh file, not decodable, or a bad array.
        """
        items = input_items(inputs, MODELNET_EXTENSIONS + (".txt",), self.name,
                            lambda o: isinstance(o, np.ndarray), CLOUD_OBJECTS)

        def decode(where: str, item: Any) -> dict[str, Any]:
            pts = _input_points(item) if isinstance(item, Path) else _cloud_object(item, where)
            return {"points": pts.reshape(-1), "n_points": int(pts.shape[0])}

        return input_rows(items, decode).astype({"n_points": "int64"})

    def baseline_features(self, x: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        """Order-invariant global descriptors of each cloud (see :func:`cloud_descriptors`).

        Flattened point coordinates depend on the arbitrary point order, so the classical
        baseline gets radial/D2/per-axis histograms and covariance eigenvalues instead.
        (Segmentation's baseline reads the point coordinates themselves, see
        :mod:`omnivec2_pipelines.tasks.segmentation`.)
        """
        if x.ndim != 3 or x.shape[2] != 3:
            raise ValueError(f"point_cloud baseline features expect x (N, P, 3), got {x.shape}")
        return cloud_descriptors(x)


def _input_points(path: Path) -> np.ndarray:
    """Points float32 ``(n, 3)`` of one point/mesh file, decoded as the readers decode it."""
    if path.suffix.lower() in (".txt", ".xyz"):
        return read_xyz(path).astype(np.float32)
    in_tree = path.parent.name in SPLITS and len(path.parts) >= 3
    rel = "/".join(path.parts[-3:]) if in_tree else path.name  # modelnet: <class>/<split>/<name>
    return load_points(path, DEFAULT_MESH_POINTS, _file_seed(0, rel))


def _cloud_object(obj: np.ndarray, where: str) -> np.ndarray:
    """An in-memory cloud as float32 ``(P, 3)``, checked as files are."""
    if obj.ndim != 2 or obj.shape[1] != 3 or not np.issubdtype(obj.dtype, np.number) or np.iscomplexobj(obj):
        raise DataError(f"point_cloud {where}: got an array of shape {obj.shape} and dtype {obj.dtype}; "
                        f"expected {CLOUD_OBJECTS}", reason="shape")
    return _check_cloud(np.asarray(obj, dtype=np.float64), Path(where)).astype(np.float32)


def _fixed_clouds(part: pd.DataFrame, p: int, mode: str, seed: int,
                  has_seg: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows → unit-sphere clouds float32 ``(N, p, 3)`` (+ point labels int64 ``(N, p)``).

    Farthest point sampling runs batched over clouds with the same point count.
    """
    clouds, labels = [], []
    for row in part.itertuples(index=False):
        n = int(row.n_points)
        flat = np.asarray(row.points, dtype=np.float64)
        if n <= 0 or flat.size != 3 * n:
            raise DataError(f"{row.source_file}: sample {row.sample_id} has {flat.size} "
                            f"coordinates, expected 3 * n_points = 3 * {n} > 0")
        clouds.append(normalize_unit_sphere(flat.reshape(n, 3)))  # (n, 3)
        if has_seg:
            lab = np.asarray(row.point_labels, dtype=np.int64)
            if lab.size != n:
                raise DataError(f"{row.source_file}: {lab.size} point labels for {n} points")
            labels.append(lab)
    idx: list[np.ndarray | None] = [None] * len(clouds)
    sizes = np.array([len(c) for c in clouds])
    ids = list(part["sample_id"].astype(str))
    for n in np.unique(sizes):
        rows = np.flatnonzero(sizes == n)
        if n <= p:
            for i in rows:
                idx[i] = np.resize(np.arange(n), p)  # cyclic repeat pads small clouds
        elif mode == "fps":
            for start in range(0, len(rows), 256):
                chunk = rows[start:start + 256]
                got = farthest_point_indices(np.stack([clouds[i] for i in chunk]), p)
                for i, ix in zip(chunk, got):
                    idx[i] = ix
        else:
            for i in rows:
                rng = np.random.default_rng([seed, zlib.crc32(ids[i].encode("utf-8"))])
                idx[i] = np.sort(rng.choice(n, size=p, replace=False))
    x = np.stack([c[ix] for c, ix in zip(clouds, idx)]).astype(np.float32)
    y = np.stack([lab[ix] for lab, ix in zip(labels, idx)]).astype(np.int64) if has_seg else None
    return x, y


register(PointCloudModality())
