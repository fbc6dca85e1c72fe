"""Sample data of the point-cloud modality: GENERATED composite part shapes (part segmentation) and
primitive meshes (ModelNet-style), with trimesh; not real scans.

Also :func:`write_off`, an ASCII OFF mesh writer (the reader is
:func:`omnivec2_pipelines.modalities.point_cloud.load_points`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from omnivec2_pipelines.checks import int_param
from omnivec2_pipelines.modalities.base import SPLITS, DataError, atomic_directory

#: Shape categories of the generated part-segmentation sample data (folder names).
SAMPLE_SHAPES: tuple[str, ...] = ("airplane", "chair", "lamp", "mug", "table")
#: Global part classes of the generated sample data (``classes.txt``), grouped by shape.
SAMPLE_PARTS: tuple[str, ...] = (
    "airplane_body", "airplane_wing", "airplane_tail",
    "chair_seat", "chair_back", "chair_leg",
    "lamp_base", "lamp_pole", "lamp_shade",
    "mug_body", "mug_handle",
    "table_top", "table_leg",
)
#: Primitive classes of the generated ModelNet-style meshes.
SAMPLE_PRIMITIVES: tuple[str, ...] = ("box", "capsule", "cone", "cylinder", "sphere", "torus")
_PART_ID = {name: i for i, name in enumerate(SAMPLE_PARTS)}


def _rotation_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    m = np.eye(4)
    m[:2, :2] = [[c, -s], [s, c]]
    return m


def _placed(mesh: Any, xyz: tuple[float, float, float], rot: np.ndarray | None = None) -> Any:
    if rot is not None:
        mesh.apply_transform(rot)
    mesh.apply_translation(xyz)
    return mesh


def composite_parts(shape: str, rng: np.random.Generator) -> list[tuple[int, Any]]:
    """Meshes of one generated composite shape as ``[(global part id, trimesh.Trimesh)]``.

    Dimensions are drawn from ``rng``; the shape stands on z = 0 with z up.
    """
    import trimesh
    from trimesh import creation as cr

    u = rng.uniform
    rot_x = trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0])
    rot_y = trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0])
    parts: list[tuple[str, Any]] = []
    if shape == "table":
        length, width, h, t, r = u(1.2, 2.0), u(0.6, 1.1), u(0.6, 1.0), u(0.04, 0.1), u(0.03, 0.07)
        parts.append(("table_top", _placed(cr.box(extents=[length, width, t]), (0, 0, h + t / 2))))
        for sx in (-1, 1):
            for sy in (-1, 1):
                leg = cr.cylinder(radius=r, height=h, sections=12)
                parts.append(("table_leg", _placed(leg, (sx * (length / 2 - 2 * r),
                                                         sy * (width / 2 - 2 * r), h / 2))))
    elif shape == "chair":
        s, h, t, back, r = u(0.45, 0.65), u(0.4, 0.55), u(0.04, 0.08), u(0.45, 0.8), u(0.02, 0.04)
        parts.append(("chair_seat", _placed(cr.box(extents=[s, s, t]), (0, 0, h + t / 2))))
        parts.append(("chair_back", _placed(cr.box(extents=[s, t, back]),
                                            (0, -s / 2 + t / 2, h + t + back / 2))))
        for sx in (-1, 1):
            for sy in (-1, 1):
                leg = cr.cylinder(radius=r, height=h, sections=12)
                parts.append(("chair_leg", _placed(leg, (sx * (s / 2 - 1.5 * r),
                                                         sy * (s / 2 - 1.5 * r), h / 2))))
    elif shape == "lamp":
        rb, tb, rp, hp, rs, hs = (u(0.2, 0.35), u(0.03, 0.08), u(0.02, 0.04), u(0.8, 1.4),
                                  u(0.25, 0.45), u(0.25, 0.45))
        parts.append(("lamp_base", _placed(cr.cylinder(radius=rb, height=tb, sections=24),
                                           (0, 0, tb / 2))))
        parts.append(("lamp_pole", _placed(cr.cylinder(radius=rp, height=hp, sections=12),
                                           (0, 0, tb + hp / 2))))
        parts.append(("lamp_shade", _placed(cr.cone(radius=rs, height=hs, sections=24),
                                            (0, 0, tb + hp - 0.4 * hs))))
    elif shape == "mug":
        rad, h, rh, th = u(0.3, 0.5), u(0.6, 1.1), u(0.15, 0.3), u(0.03, 0.06)
        parts.append(("mug_body", _placed(cr.cylinder(radius=rad, height=h, sections=24),
                                          (0, 0, h / 2))))
        handle = cr.torus(major_radius=rh, minor_radius=th, major_sections=24, minor_sections=8)
        parts.append(("mug_handle", _placed(handle, (rad, 0, h / 2), rot_x)))
    elif shape == "airplane":
        body_l, body_r, span, chord, fin = u(1.6, 2.4), u(0.1, 0.18), u(1.4, 2.4), u(0.25, 0.45), u(0.25, 0.45)
        body = cr.capsule(height=body_l, radius=body_r, count=[12, 12])
        parts.append(("airplane_body", _placed(body, (0, 0, 0), rot_y)))
        parts.append(("airplane_wing", _placed(cr.box(extents=[chord, span, 0.03]),
                                               (u(-0.1, 0.2), 0, 0))))
        tail_x = -body_l / 2
        parts.append(("airplane_tail", _placed(cr.box(extents=[chord * 0.6, 0.03, fin]),
                                               (tail_x, 0, body_r + fin / 2))))
        parts.append(("airplane_tail", _placed(cr.box(extents=[chord * 0.5, span * 0.35, 0.03]),
                                               (tail_x, 0, body_r * 0.5))))
    else:
        raise ValueError(f"unknown sample shape {shape!r}; expected one of {SAMPLE_SHAPES}")
    return [(_PART_ID[name], mesh) for name, mesh in parts]


def sample_composite(shape: str, n_points: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Surface points ``(n, 3)`` and global part labels ``(n,)`` of one random composite shape.

    Points are sampled uniformly over the union of the part surfaces (seeded), then the shape
    gets a random rotation about the up axis (z).
    """
    import trimesh

    parts = composite_parts(shape, rng)
    mesh = trimesh.util.concatenate([m for _, m in parts])
    part_of_face = np.concatenate([np.full(len(m.faces), pid, dtype=np.int64) for pid, m in parts])
    points, face_idx = trimesh.sample.sample_surface(mesh, n_points, seed=int(rng.integers(2**31)))
    rot = _rotation_z(float(rng.uniform(0.0, 2 * np.pi)))[:3, :3]
    return np.asarray(points) @ rot.T, part_of_face[face_idx]


def primitive_mesh(kind: str, rng: np.random.Generator) -> Any:
    """One random primitive ``kind`` (see :data:`SAMPLE_PRIMITIVES`) with random scale, aspect
    (per-axis stretch 0.7..1.4) and rotation."""
    import trimesh
    from trimesh import creation as cr

    if kind == "box":
        mesh = cr.box(extents=[1.0, 1.0, 1.0])
    elif kind == "sphere":
        mesh = cr.icosphere(subdivisions=2, radius=0.6)
    elif kind == "cylinder":
        mesh = cr.cylinder(radius=0.5, height=1.2, sections=24)
    elif kind == "cone":
        mesh = cr.cone(radius=0.6, height=1.2, sections=24)
    elif kind == "capsule":
        mesh = cr.capsule(height=1.0, radius=0.35, count=[12, 12])
    elif kind == "torus":
        mesh = cr.torus(major_radius=0.6, minor_radius=0.2, major_sections=24, minor_sections=10)
    else:
        raise ValueError(f"unknown primitive {kind!r}; expected one of {SAMPLE_PRIMITIVES}")
    scale = np.eye(4)
    scale[:3, :3] = np.diag(rng.uniform(0.5, 2.0) * rng.uniform(0.7, 1.4, size=3))
    mesh.apply_transform(scale)
    mesh.apply_transform(trimesh.transformations.random_rotation_matrix(rand=rng.random(3)))
    return mesh


def write_off(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Write a triangle mesh as ASCII OFF (6 decimals)."""
    lines = ["OFF", f"{len(vertices)} {len(faces)} 0"]
    lines += [f"{x:.6f} {y:.6f} {z:.6f}" for x, y, z in np.asarray(vertices, dtype=np.float64)]
    lines += [f"3 {a} {b} {c}" for a, b, c in np.asarray(faces, dtype=np.int64)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _split_indices(n: int, test_fraction: float, rng: np.random.Generator) -> set[int]:
    n_test = int(round(n * test_fraction))
    n_test = min(max(n_test, 1), n - 1) if n >= 2 else 0
    return set(rng.choice(n, size=n_test, replace=False).tolist())


def make_sample_data(root: Path, params: dict[str, Any]) -> dict[str, Any]:
    """Write GENERATED (trimesh) point-cloud data; deterministic for fixed params.

    * ``root``: part-segmentation set in ``segmentation_txt`` layout: composite shapes
      (:data:`SAMPLE_SHAPES`, e.g. a table = box top + 4 cylinder legs, a lamp = disc base +
      cylinder pole + cone shade) with random dimensions and yaw, ``points_per_shape``
      surface points each with a global part label (:data:`SAMPLE_PARTS`, ``classes.txt``),
      in ``root/{train,test}/<shape>/<shape>_<i>.txt`` rows ``"x y z label"``.
    * ``root/<modelnet_subdir>`` (default ``modelnet``; ``""``/None to skip): ModelNet-style
      ``.off`` meshes of :data:`SAMPLE_PRIMITIVES` with random scale, aspect and rotation in
      ``<class>/{train,test}/<class>_<i>.off``.

    Args:
        root: Output folder (replaced atomically).
        params: ``shapes_per_class`` (80), ``points_per_shape`` (512),
            ``meshes_per_class`` (60), ``modelnet_subdir`` ("modelnet"),
            ``test_fraction`` (0.2), ``seed`` (0).

    Returns:
        Manifest ``{"source", "files", "classes", "part_classes", "modelnet"}``.
    """
    per_shape = int_param(params, "shapes_per_class", "point_cloud.sample_data", 80)
    n_points = int_param(params, "points_per_shape", "point_cloud.sample_data", 512)
    per_mesh = int_param(params, "meshes_per_class", "point_cloud.sample_data", 60)
    seed = int_param(params, "seed", "point_cloud.sample_data", 0)
    test_fraction = float(params.get("test_fraction", 0.2))
    sub = params.get("modelnet_subdir", "modelnet")
    if per_shape < 2 or n_points < 8 or (sub and per_mesh < 2) or not 0 < test_fraction < 1:
        raise DataError(f"point_cloud sample data params need shapes_per_class >= 2, "
                        f"points_per_shape >= 8, meshes_per_class >= 2 and test_fraction in "
                        f"(0, 1); got {params}")
    if sub and (Path(str(sub)).is_absolute() or Path(str(sub)).name in SPLITS
                or "/" in str(sub) or str(sub) in ("..", ".")):
        raise DataError(f"point_cloud.sample_data.modelnet_subdir={sub!r} must be a plain "
                        f"folder name other than {list(SPLITS)}")
    files = 0
    with atomic_directory(Path(root)) as tmp:
        (tmp / "classes.txt").write_text("\n".join(SAMPLE_PARTS) + "\n", encoding="utf-8")
        for ci, shape in enumerate(SAMPLE_SHAPES):
            rng = np.random.default_rng([seed, 1, ci])
            test = _split_indices(per_shape, test_fraction, rng)
            for i in range(per_shape):
                pts, lab = sample_composite(shape, n_points, rng)
                out = tmp / ("test" if i in test else "train") / shape / f"{shape}_{i:04d}.txt"
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text("".join(f"{x:.5f} {y:.5f} {z:.5f} {int(c)}\n"
                                       for (x, y, z), c in zip(pts, lab)), encoding="utf-8")
                files += 1
        if sub:
            for ci, kind in enumerate(SAMPLE_PRIMITIVES):
                rng = np.random.default_rng([seed, 2, ci])
                test = _split_indices(per_mesh, test_fraction, rng)
                for i in range(per_mesh):
                    mesh = primitive_mesh(kind, rng)
                    split = "test" if i in test else "train"
                    out = tmp / str(sub) / kind / split / f"{kind}_{i:04d}.off"
                    out.parent.mkdir(parents=True, exist_ok=True)
                    write_off(out, mesh.vertices, mesh.faces)
                    files += 1
    return {"source": "composite part shapes and primitive meshes generated with trimesh "
                      "(generated, not real scans)",
            "files": files, "classes": list(SAMPLE_SHAPES), "part_classes": list(SAMPLE_PARTS),
            "modelnet": {"path": str(sub) if sub else None,
                         "classes": list(SAMPLE_PRIMITIVES) if sub else []}}
