"""Graph modality: TU Dortmund benchmark files → canonical table → padded node-feature arrays.

Layout (``source.format: tu``), all files comma/space separated, 1-based ids::

    root/<NAME>_A.txt                 m lines "i, j": edge from node i to node j
    root/<NAME>_graph_indicator.txt   n lines: graph id (1..N) of node i (line i)
    root/<NAME>_graph_labels.txt      N lines: class label of graph i (integers)
    root/<NAME>_node_labels.txt       optional, n lines: integer label of node i
    root/<NAME>_node_attributes.txt   optional, n lines: comma-separated floats of node i

``source.name`` picks ``<NAME>`` (optional when ``root`` holds exactly one ``*_A.txt``). Edge
labels/attributes and other files are ignored. Edges are read as undirected (TU lists both
directions). TU has no split: a deterministic stratified ``test_fraction`` of the graphs is
the test split unless ``source.split_file`` gives one ``train``/``val``/``test`` word per graph.

Embedded default data: the REAL MUTAG data set bundled with grakel (:mod:`omnivec2_pipelines.sample_data.graph`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from omnivec2_pipelines.checks import flag, int_at_least, int_param, pos_int
from omnivec2_pipelines.modalities._shared.images import check_meta_kind
from omnivec2_pipelines.modalities._shared.inputs import require_rows
from omnivec2_pipelines.modalities.base import (
    SPLITS,
    ArrayBundle,
    DataError,
    ErrorPolicy,
    Modality,
    assign_val_split,
    check_source,
    classification_task,
    register,
    table_class_names,
)

#: Files of a TU data set this reader uses: required, then optional.
REQUIRED_SUFFIXES: tuple[str, ...] = ("_A.txt", "_graph_indicator.txt", "_graph_labels.txt")
OPTIONAL_SUFFIXES: tuple[str, ...] = ("_node_labels.txt", "_node_attributes.txt")
_PREFIX = "graph.tokenization"


# ---------------------------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------------------------
def _lines(path: Path) -> list[tuple[int, str]]:
    """Non-empty stripped lines with 1-based line numbers; blank lines only at the end."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e})", reason="encoding") from e
    except OSError as e:
        raise DataError(f"{path}: cannot read ({type(e).__name__}: {e})", reason="corrupt") from e
    raw = text.splitlines()
    while raw and not raw[-1].strip():
        raw.pop()
    out = []
    for i, line in enumerate(raw, start=1):
        line = line.strip()
        if not line:
            raise DataError(f"{path}:{i}: blank line inside the file; expected one entry per "
                            f"line (line numbers are node/graph ids)", reason="corrupt")
        out.append((i, line))
    return out


def parse_ints(path: Path, n_cols: int, what: str) -> np.ndarray:
    """Integer table of ``n_cols`` columns per line → int64 ``(m, n_cols)``; ``file:line`` errors."""
    rows = []
    for lineno, line in _lines(path):
        tokens = line.replace(",", " ").split()
        if len(tokens) != n_cols:
            raise DataError(f"{path}:{lineno}: malformed line {line[:40]!r}; expected {what}",
                            reason="corrupt")
        try:
            rows.append([_to_int(t) for t in tokens])
        except ValueError:
            raise DataError(f"{path}:{lineno}: malformed line {line[:40]!r}; expected {what} "
                            f"(integers)", reason="corrupt") from None
    if not rows:
        raise DataError(f"{path}: file is empty; expected {what}", reason="empty")
    return np.array(rows, dtype=np.int64).reshape(len(rows), n_cols)


def _to_int(token: str) -> int:
    """``"3"`` or ``"3.0"`` → 3; anything else raises ValueError."""
    try:
        return int(token)
    except ValueError:
        value = float(token)
        if not value.is_integer():
            raise
        return int(value)


def _parse_floats(path: Path, what: str) -> tuple[np.ndarray, list[int]]:
    """Float table with the same column count on every line → float64 ``(m, C)`` + line numbers."""
    rows, lines = [], []
    for lineno, line in _lines(path):
        tokens = [t for t in line.replace(",", " ").split()]
        if rows and len(tokens) != len(rows[0]):
            raise DataError(f"{path}:{lineno}: {len(tokens)} values but line {lines[0]} has "
                            f"{len(rows[0])}; expected {what}", reason="shape")
        try:
            rows.append([float(t) for t in tokens])
        except ValueError:
            raise DataError(f"{path}:{lineno}: non-numeric value in {line[:40]!r}; expected "
                            f"{what}", reason="corrupt") from None
        lines.append(lineno)
    if not rows:
        raise DataError(f"{path}: file is empty; expected {what}", reason="empty")
    return np.array(rows, dtype=np.float64), lines


def resolve_name(root: Path, name: str | None) -> str:
    """The TU data set name read from ``root``: ``name`` or the single ``*_A.txt`` prefix."""
    if name:
        missing = [f"{name}{s}" for s in REQUIRED_SUFFIXES if not (root / f"{name}{s}").is_file()]
        if missing:
            raise DataError(f"{root}: missing {missing}; expected the TU files "
                            f"{[name + s for s in REQUIRED_SUFFIXES]} for graph.source.name="
                            f"{name!r}", reason="missing")
        return str(name)
    names = sorted(p.name[: -len("_A.txt")] for p in root.glob("*_A.txt") if not p.name.startswith("."))
    if len(names) != 1:
        raise DataError(f"{root}: found {len(names)} TU data sets {names} (<NAME>_A.txt files); "
                        f"expected exactly one, or set graph.source.name",
                        reason="empty" if not names else "invalid")
    return resolve_name(root, names[0])


def laplacian_pe(n: int, edges: np.ndarray, k: int) -> np.ndarray:
    """Laplacian eigenvector positional encodings of one graph: float64 ``(n, k)``.

    Eigenvectors of the symmetric normalised Laplacian ``I - D^-1/2 A D^-1/2`` (undirected,
    self loops dropped, isolated nodes get a zero row in ``D^-1/2 A D^-1/2``) in ascending
    eigenvalue order, skipping the first (trivial) one; columns beyond ``n - 1`` are zero.
    Signs are fixed deterministically: the entry of largest magnitude (first such index,
    magnitudes rounded to 1e-8) is made positive.
    """
    out = np.zeros((n, k))
    if k == 0 or n < 2:
        return out
    a = np.zeros((n, n))
    if len(edges):
        a[edges[:, 0], edges[:, 1]] = 1.0
        a[edges[:, 1], edges[:, 0]] = 1.0
    np.fill_diagonal(a, 0.0)
    deg = a.sum(1)
    dinv = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1e-12)), 0.0)
    lap = np.eye(n) - dinv[:, None] * a * dinv[None, :]
    _, vecs = np.linalg.eigh(lap)
    vecs = vecs[:, 1:k + 1]
    pivot = np.round(np.abs(vecs), 8).argmax(0)
    signs = np.sign(vecs[pivot, np.arange(vecs.shape[1])])
    signs[signs == 0] = 1.0
    out[:, :vecs.shape[1]] = vecs * signs
    return out


@dataclass
class TuGraphs:
    """The parsed files of one TU data set, split into graphs (:func:`parse_tu`).

    Attributes:
        f_a: The edge file ``<NAME>_A.txt``.
        f_ind: The graph indicator file.
        graph_labels: The graph label of each graph (graph id - 1), or None when not read.
        n_graphs: Number of graphs (label lines, else the largest graph id).
        parts: Per graph: its global 0-based node ids and its edges ``(E, 2)`` in global ids.
        local: Index of every global node within its graph.
        node_labels: Node labels of all nodes, or None without a node-label file.
        attrs: Node attributes ``(n, A)`` of all nodes, or None without an attribute file.
        problems: First per-graph problem by graph id (edges to missing nodes, NaN attributes).
    """

    f_a: Path
    f_ind: Path
    graph_labels: np.ndarray | None
    n_graphs: int
    parts: list[tuple[np.ndarray, np.ndarray]]
    local: np.ndarray
    node_labels: np.ndarray | None
    attrs: np.ndarray | None
    problems: dict[int, DataError]

    def graph_args(self, g: int) -> tuple[Any, ...]:
        """Arguments of :func:`_graph_row` for the 0-based graph ``g`` (before ``allow_edgeless``)."""
        nodes, ge = self.parts[g]
        return (g + 1, nodes, ge, self.local, self.node_labels, self.attrs, self.problems.get(g + 1))


def parse_tu(root: Path, name: str, labelled: bool = True) -> TuGraphs:
    """Parse and check the TU files ``root/<name>_*.txt`` (graph labels only when ``labelled``).

    Problems of one graph (edges to missing nodes, NaN attributes) are collected in ``problems`` for the
    caller's error policy; problems of the files raise.

    Raises:
        DataError: malformed lines (``file:line``), line-count mismatches, graph ids outside the data,
            edges between graphs, edges whose both nodes are missing.
    """
    f_a, f_ind, f_lab = (root / f"{name}{s}" for s in REQUIRED_SUFFIXES)
    indicator = parse_ints(f_ind, 1, "one graph id per line (line i = node i)")[:, 0]
    graph_labels = parse_ints(f_lab, 1, "one integer graph label per line")[:, 0] if labelled else None
    edges = parse_ints(f_a, 2, "'i, j' (two node ids) per line")
    n = len(indicator)
    n_graphs = len(graph_labels) if graph_labels is not None else int(indicator.max(initial=0))
    bad = np.flatnonzero((indicator < 1) | (indicator > n_graphs))
    if len(bad):
        why = f" ({f_lab.name} has {n_graphs} lines)" if labelled else ""
        raise DataError(f"{f_ind}:{bad[0] + 1}: graph id {indicator[bad[0]]} is outside 1..{n_graphs}{why}",
                        reason="invalid")
    node_labels = attrs = None
    f_nl, f_na = (root / f"{name}{s}" for s in OPTIONAL_SUFFIXES)
    if f_nl.is_file():
        node_labels = parse_ints(f_nl, 1, "one integer node label per line")[:, 0]
        if len(node_labels) != n:
            raise DataError(f"{f_nl}: {len(node_labels)} lines but {f_ind.name} lists {n} "
                            f"nodes; expected one label per node", reason="shape")
    attr_lines: list[int] = []
    if f_na.is_file():
        attrs, attr_lines = _parse_floats(f_na, "the same number of comma-separated floats per node")
        if len(attrs) != n:
            raise DataError(f"{f_na}: {len(attrs)} lines but {f_ind.name} lists {n} nodes; "
                            f"expected one attribute vector per node", reason="shape")
    problems: dict[int, DataError] = {}  # graph id -> first per-graph problem

    def note(gid: int, err: DataError) -> None:
        problems.setdefault(int(gid), err)

    # edges pointing at missing nodes: blame the graph of the endpoint that exists
    out_of_range = (edges < 1) | (edges > n)
    for row in np.flatnonzero(out_of_range.any(1)):
        u, v = edges[row]
        ok = [x for x in (u, v) if 1 <= x <= n]
        msg = (f"{f_a}:{row + 1}: edge ({u}, {v}) points at a missing node; "
               f"{f_ind.name} lists nodes 1..{n}")
        if not ok:
            raise DataError(msg, reason="missing")
        note(indicator[ok[0] - 1], DataError(msg, reason="missing"))
    good = ~out_of_range.any(1)
    e0 = edges[good] - 1  # 0-based global node ids
    rows_good = np.flatnonzero(good)
    cross = indicator[e0[:, 0]] != indicator[e0[:, 1]]
    if cross.any():
        r = int(np.flatnonzero(cross)[0])
        u, v = edges[rows_good[r]]
        raise DataError(f"{f_a}:{rows_good[r] + 1}: edge ({u}, {v}) joins graph "
                        f"{indicator[u - 1]} and graph {indicator[v - 1]}; expected edges "
                        f"within one graph", reason="invalid")
    if attrs is not None:
        for i in np.flatnonzero(~np.isfinite(attrs).all(1)):
            note(indicator[i], DataError(f"{f_na}:{attr_lines[i]}: NaN/inf attribute of node "
                                         f"{i + 1}", reason="nan"))
    # nodes and edges per graph
    order = np.argsort(indicator, kind="stable")
    starts = np.searchsorted(indicator[order], np.arange(1, n_graphs + 2))
    local = np.empty(n, dtype=np.int64)
    for g in range(n_graphs):
        nodes = order[starts[g]:starts[g + 1]]
        local[nodes] = np.arange(len(nodes))
    edge_graph = indicator[e0[:, 0]] if len(e0) else np.zeros(0, dtype=np.int64)
    e_order = np.argsort(edge_graph, kind="stable")
    e_starts = np.searchsorted(edge_graph[e_order], np.arange(1, n_graphs + 2))
    parts = [(order[starts[g]:starts[g + 1]], e0[e_order[e_starts[g]:e_starts[g + 1]]]) for g in range(n_graphs)]
    return TuGraphs(f_a, f_ind, graph_labels, n_graphs, parts, local, node_labels, attrs, problems)


# ---------------------------------------------------------------------------------------------
# the modality
# ---------------------------------------------------------------------------------------------
class GraphModality(Modality):
    """Labelled graphs (TU format) for graph classification, one token per node."""

    name = "graph"
    formats = ("tu",)
    source_keys = ("name", "test_fraction", "split_file", "allow_edgeless")
    sample_data_keys = ("name",)
    tokenization_keys = ("max_nodes", "lap_pe_dim", "truncate")
    task_names = ("classification",)

    def make_sample_data(self, root: Path, params: dict[str, Any]) -> dict[str, Any]:
        """Copy the REAL MUTAG data set bundled with grakel (its test data) into ``root`` (see
        :func:`omnivec2_pipelines.sample_data.graph.make_sample_data`)."""
        from omnivec2_pipelines.sample_data.graph import make_sample_data

        return make_sample_data(root, params)

    def read(self, source: dict[str, Any]) -> pd.DataFrame:
        """Read a TU data set into the canonical table (one row per graph).

        Source params: ``name``; ``test_fraction`` (0.2, stratified, seeded by ``seed``) or
        ``split_file`` (relative to ``root`` or absolute; line i = ``train|val|test`` of
        graph i); ``val_fraction`` (0.1); ``seed`` (0); ``allow_edgeless`` (false);
        ``on_error`` (raise|skip; skip leaves out bad graphs).

        Payload columns: ``graph_id`` (1-based id in the files), ``n_nodes``, ``node_labels``
        (int64 per node; empty without a node-label file), ``node_attributes`` (float32,
        flattened ``(n_nodes, n_node_attributes)``), ``n_node_attributes``, ``edges`` (int64,
        flattened ``(n_edges, 2)`` of 0-based node indices within the graph, as listed),
        ``n_edges``. ``label`` indexes the graph labels in numeric order.

        Raises:
            DataError: missing files, malformed lines (``file:line``), line-count mismatches,
                node ids outside the data, edges between graphs, graphs without nodes
                (``empty``), edges to missing nodes (``missing``), NaN attributes (``nan``),
                graphs without edges (``degenerate``, unless ``allow_edgeless``), bad splits.
        """
        _, root = check_source(source, self)
        if not root.is_dir():
            raise DataError(f"graph.source.path: {root} is not a directory; expected TU files "
                            f"<NAME>_A.txt, <NAME>_graph_indicator.txt, <NAME>_graph_labels.txt")
        policy = ErrorPolicy(source, self.name)
        seed = source.get("seed", 0)
        allow_edgeless = flag(source, "allow_edgeless", "graph.source", False)
        name = resolve_name(root, source.get("name"))
        tu = parse_tu(root, name)
        f_ind, graph_labels, n_graphs = tu.f_ind, tu.graph_labels, tu.n_graphs
        split_of = self._splits(root, source, graph_labels, seed)
        rows: list[dict[str, Any]] = []
        for g in range(n_graphs):
            gid = g + 1
            row = policy.call(f"{tu.f_a} (graph {gid})", _graph_row, *tu.graph_args(g), allow_edgeless, f_ind)
            if row is None:
                continue
            lab = int(graph_labels[g])
            rows.append({"sample_id": f"{name}/{gid:06d}", "source_file": f_ind.name,
                         "label": lab, "label_name": str(lab), "split": split_of[g], **row})
        if not rows:
            raise DataError(f"{root}: every graph of {name} was skipped (on_error: skip)",
                            reason="empty")
        kept = sorted({r["label"] for r in rows})
        label_of = {c: i for i, c in enumerate(kept)}
        for r in rows:
            r["label"] = label_of[r["label"]]
        table = pd.DataFrame(rows)
        for s in ("train", "test"):
            if not (table["split"] == s).any():
                raise DataError(f"{root}: no graphs left in split {s!r}; check test_fraction / "
                                f"split_file and skipped graphs")
        table = table.astype({"label": "int64", "graph_id": "int64", "n_nodes": "int64",
                              "n_edges": "int64", "n_node_attributes": "int64"})
        table = assign_val_split(table, source.get("val_fraction", 0.1), seed)
        return policy.attach(table)

    @staticmethod
    def _splits(root: Path, source: dict[str, Any], labels: np.ndarray, seed: Any) -> list[str]:
        """Split name of every graph: from ``split_file`` or a stratified ``test_fraction``."""
        n = len(labels)
        split_file = source.get("split_file")
        if split_file:
            path = Path(split_file)
            path = path if path.is_absolute() else root / path
            if not path.is_file():
                raise DataError(f"graph.source.split_file: {path} does not exist; expected one "
                                f"of train/val/test per line, line i = graph i", reason="missing")
            words = _lines(path)
            if len(words) != n:
                raise DataError(f"{path}: {len(words)} lines but the data set has {n} graphs; "
                                f"expected one split per graph", reason="shape")
            for lineno, w in words:
                if w not in SPLITS:
                    raise DataError(f"{path}:{lineno}: split {w!r}; expected one of {list(SPLITS)}")
            return [w for _, w in words]
        frac = source.get("test_fraction", 0.2)
        if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0 < frac < 1:
            raise DataError(f"graph.source.test_fraction must be in (0, 1), got {frac!r}")
        rng = np.random.default_rng(int_param(source, "seed", "graph.source", 0))
        out = ["train"] * n
        for c in sorted(set(labels.tolist())):
            idx = np.flatnonzero(labels == c)
            n_test = int(round(len(idx) * float(frac)))
            if n_test and len(idx) - n_test >= 1:
                for i in rng.choice(idx, size=n_test, replace=False):
                    out[int(i)] = "test"
        return out

    # -- tokenization -----------------------------------------------------------------------
    def tokenize(self, table: pd.DataFrame, params: dict[str, Any]) -> ArrayBundle:
        """Padded per-node feature matrices.

        ``x`` float32 ``(N, max_nodes, F)``, per real node ``[one-hot node label (vocabulary of
        the train graphs; unseen labels all zero) | node attributes (standardised with train
        mean/std) | lap_pe_dim Laplacian eigenvector PE | degree / max train degree | 1.0]``;
        padding rows are all zero (the last column is the validity flag).

        Args:
            table: Canonical graph table (see :meth:`read`).
            params: ``max_nodes`` (graphs with more nodes raise, or are cut to their first
                ``max_nodes`` nodes with ``truncate: true``), ``lap_pe_dim`` (>= 0).

        Returns:
            Per split ``x`` and ``y.classification`` int64 ``(N,)``; tokenizer ``graph_nodes``.

        Raises:
            DataError: bad params (naming ``graph.tokenization.<key>``), too-large graphs,
                no train rows, inconsistent attribute counts.
        """
        max_nodes = pos_int(params, "max_nodes", _PREFIX)
        k = int_at_least(params, "lap_pe_dim", _PREFIX, 0, default=8)
        truncate = flag(params, "truncate", _PREFIX, False)
        if not (table["split"] == "train").any():
            raise DataError("graph table has no 'train' rows; the node-label vocabulary and "
                            "normalisation statistics come from the train split")
        n_attr = sorted(set(int(v) for v in table["n_node_attributes"]))
        if len(n_attr) != 1:
            raise DataError(f"graph table mixes node-attribute counts {n_attr}; expected one")
        n_attr = n_attr[0]
        too_big = table[table["n_nodes"] > max_nodes]
        if len(too_big) and not truncate:
            r = too_big.iloc[0]
            raise DataError(f"graph {r['sample_id']} has {int(r['n_nodes'])} nodes, more than "
                            f"graph.tokenization.max_nodes={max_nodes} ({len(too_big)} graph(s) "
                            f"too large; largest {int(table['n_nodes'].max())}); raise max_nodes "
                            f"or set graph.tokenization.truncate: true")
        graphs = {i: _graph_arrays(r, max_nodes) for i, r in enumerate(table.itertuples(index=False))}
        train_pos = np.flatnonzero((table["split"] == "train").to_numpy())
        has_labels = all(len(graphs[i][1]) for i in graphs)
        vocab = sorted({int(v) for i in train_pos for v in graphs[i][1]}) if has_labels else []
        if n_attr:
            tr_attr = np.concatenate([graphs[i][2] for i in train_pos])
            a_mean = tr_attr.mean(0)
            a_std = np.maximum(tr_attr.std(0), 1e-6)
        else:
            a_mean = a_std = np.zeros(0)
        max_deg = max(1.0, max(float(graphs[i][4].max(initial=0)) for i in train_pos))
        v, f = len(vocab), len(vocab) + n_attr + k + 2
        enc = _Encoding(vocab, a_mean, a_std, k, max_deg, max_nodes)
        arrays: dict[str, np.ndarray] = {}
        splits: dict[str, int] = {}
        unseen: dict[str, int] = {}
        for split in SPLITS:
            pos = np.flatnonzero((table["split"] == split).to_numpy())
            if not len(pos):
                continue
            x, n_unseen = _encode_graphs([graphs[i] for i in pos], enc)
            arrays[f"{split}.x"] = x
            arrays[f"{split}.y.classification"] = table["label"].to_numpy(dtype=np.int64)[pos]
            splits[split] = int(len(pos))
            unseen[split] = n_unseen
        class_names = table_class_names(table)
        task = classification_task(class_names)
        meta = {
            "modality": self.name,
            "tokenizer": {"kind": "graph_nodes", "n_features": f, "max_nodes": max_nodes,
                          "n_node_labels": v},
            "pretrain_input_key": "x",
            "tasks": {task.name: task.to_dict()},
            "splits": splits,
            "features": {
                "node_label_vocab": vocab,
                "columns": {"node_label_onehot": [0, v], "node_attributes": [v, v + n_attr],
                            "lap_pe": [v + n_attr, v + n_attr + k], "degree": f - 2, "valid": f - 1},
                "lap_pe_dim": k,
                "unseen_node_labels": unseen,
                "truncated_graphs": int(len(too_big)) if truncate else 0,
                "truncate": truncate,
            },
            "normalization": {"attribute_mean": a_mean.tolist(), "attribute_std": a_std.tolist(),
                              "max_degree": max_deg,
                              "formula": "attrs: (a - mean) / std; degree: deg / max_degree "
                                         "(train statistics)"},
        }
        return ArrayBundle(arrays=arrays, meta=meta)

    def preprocess(self, table: pd.DataFrame, meta: dict[str, Any]) -> dict[str, np.ndarray]:
        """A bundle's node encoding (``meta["features"]``: node-label vocabulary, Laplacian PE size,
        truncation; ``meta["normalization"]``: train attribute statistics and degree scale) applied to
        graph rows: ``{"x": (N, max_nodes, F) float32}``, as :meth:`tokenize` makes them.

        Raises:
            DataError: a meta of another modality, a graph with another node-attribute count, or one
                larger than ``max_nodes`` when the bundle does not truncate (named).
        """
        tok = check_meta_kind(meta, "graph_nodes", self.name)
        require_rows(table, self.name)
        feats, norm = meta["features"], meta["normalization"]
        enc = _Encoding(list(feats["node_label_vocab"]), np.asarray(norm["attribute_mean"], dtype=np.float64),
                        np.asarray(norm["attribute_std"], dtype=np.float64), int(feats["lap_pe_dim"]),
                        float(norm["max_degree"]), int(tok["max_nodes"]))
        for r in table.itertuples(index=False):
            where = f"{r.source_file}: graph {r.sample_id}"
            if int(r.n_node_attributes) != len(enc.a_mean):
                raise DataError(f"{where} has {int(r.n_node_attributes)} node attribute(s); the bundle was "
                                f"tokenized with {len(enc.a_mean)}", reason="shape")
            if int(r.n_nodes) > enc.max_nodes and not feats.get("truncate", False):
                raise DataError(f"{where} has {int(r.n_nodes)} nodes, more than the bundle's max_nodes="
                                f"{enc.max_nodes} (tokenized without graph.tokenization.truncate)",
                                reason="shape")
        graphs = [_graph_arrays(r, enc.max_nodes) for r in table.itertuples(index=False)]
        return {"x": _encode_graphs(graphs, enc)[0]}

    def read_inputs(self, inputs: Any) -> pd.DataFrame:
        """Raw graphs → graph rows (``id``, ``sample_id``, ``source_file`` and the payload columns of
        :meth:`read`) for :meth:`preprocess`.

        A TU folder (one data set, ``<NAME>_A.txt`` + ``_graph_indicator.txt``; ``_node_labels.txt`` and
        ``_node_attributes.txt`` optional, graph labels not needed) gives every graph, parsed as :meth:`read`
        parses it (ids ``<folder>/<position>``, 0-based in graph-id order; edgeless graphs are kept); a
        ``networkx`` graph gives one graph (ids ``"0"``, ``"1"``, ...): nodes in ``G.nodes`` order, the node
        attribute ``label`` (int, on every node or none) as node label and ``attributes`` (floats) as node
        attributes, edges undirected.

        Raises:
            DataError: naming an input that is not a TU folder or graph, or a malformed file/graph.
        """
        values = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if not values:
            raise DataError("graph inputs: got an empty list; expected TU folders or networkx graphs",
                            reason="empty")
        rows: list[dict[str, Any]] = []
        for i, value in enumerate(values):
            if isinstance(value, (str, os.PathLike)):
                rows += _tu_input_rows(Path(value))
            elif _is_networkx(value):
                rows.append({"id": str(i), "sample_id": str(i), "source_file": f"input {i}",
                             **_networkx_row(value, f"graph input {i}")})
            else:
                raise DataError(f"graph input {i}: got {type(value).__name__}; expected {GRAPH_OBJECTS}",
                                reason="invalid")
        return pd.DataFrame(rows).astype({"graph_id": "int64", "n_nodes": "int64", "n_edges": "int64",
                                          "n_node_attributes": "int64"})

    def baseline_features(self, x: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        """Sum- and mean-pooled node features (flag excluded) plus node and edge counts:
        ``(N, 2 * (F - 1) + 2)``. The edge count is recovered from the degree column."""
        if x.ndim != 3:
            raise ValueError(f"graph baseline features expect x (N, max_nodes, F), got {x.shape}")
        valid = (x[..., -1] > 0.5).astype(np.float64)  # (N, M)
        feats = x[..., :-1].astype(np.float64) * valid[..., None]
        n_nodes = valid.sum(1)
        total = feats.sum(1)
        mean = total / np.maximum(n_nodes, 1.0)[:, None]
        cols = meta.get("features", {}).get("columns", {})
        max_deg = float(meta.get("normalization", {}).get("max_degree", 1.0))
        deg_col = cols.get("degree", x.shape[-1] - 2)
        n_edges = total[:, deg_col] * max_deg / 2.0
        return np.concatenate([total, mean, n_nodes[:, None], n_edges[:, None]], axis=1).astype(np.float32)


#: What a graph input may be, for messages.
GRAPH_OBJECTS = "a TU folder (<NAME>_A.txt, <NAME>_graph_indicator.txt, ...), a networkx graph, or a list of those"


@dataclass(frozen=True)
class _Encoding:
    """The fitted node encoding of a bundle: label vocabulary, attribute statistics, PE size, degree scale."""

    vocab: list[int]
    a_mean: np.ndarray
    a_std: np.ndarray
    k: int
    max_deg: float
    max_nodes: int

    @property
    def n_features(self) -> int:
        return len(self.vocab) + len(self.a_mean) + self.k + 2


def _encode_graphs(graphs: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
                   enc: _Encoding) -> tuple[np.ndarray, int]:
    """:func:`_graph_arrays` tuples → node features float32 ``(N, max_nodes, F)`` and the count of node
    labels outside the vocabulary."""
    v, n_attr, k, f = len(enc.vocab), len(enc.a_mean), enc.k, enc.n_features
    slot = {lab: j for j, lab in enumerate(enc.vocab)}
    x = np.zeros((len(graphs), enc.max_nodes, f), dtype=np.float32)
    n_unseen = 0
    for row, (nn_, labels, at, edges, deg) in enumerate(graphs):
        if v:
            cols = np.array([slot.get(int(lab), -1) for lab in labels])
            n_unseen += int((cols < 0).sum())
            hit = np.flatnonzero(cols >= 0)
            x[row, hit, cols[hit]] = 1.0
        if n_attr:
            x[row, :nn_, v:v + n_attr] = (at - enc.a_mean) / enc.a_std
        x[row, :nn_, v + n_attr:v + n_attr + k] = laplacian_pe(nn_, edges, k)
        x[row, :nn_, f - 2] = deg / enc.max_deg
        x[row, :nn_, f - 1] = 1.0
    return x, n_unseen


def _is_networkx(obj: Any) -> bool:
    try:
        import networkx as nx
    except ImportError:  # pragma: no cover - networkx is a dependency
        return False
    return isinstance(obj, nx.Graph)


def _networkx_row(graph: Any, where: str) -> dict[str, Any]:
    """The payload columns of one networkx graph (see :meth:`GraphModality.read_inputs`)."""
    nodes = list(graph.nodes)
    if not nodes:
        raise DataError(f"{where}: graph has no nodes", reason="empty")
    index = {u: i for i, u in enumerate(nodes)}
    has = [("label" in graph.nodes[u]) for u in nodes]
    if any(has) and not all(has):
        raise DataError(f"{where}: node attribute 'label' is on {sum(has)} of {len(nodes)} nodes; "
                        f"expected it on every node or none", reason="missing")
    try:
        labels = np.array([int(graph.nodes[u]["label"]) for u in nodes] if all(has) else [], dtype=np.int64)
        attrs = np.array([[float(a) for a in np.atleast_1d(graph.nodes[u].get("attributes", []))]
                          for u in nodes], dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise DataError(f"{where}: node 'label' must be an int and 'attributes' a list of floats "
                        f"({type(e).__name__}: {e})", reason="invalid") from e
    if attrs.ndim != 2 or not np.isfinite(attrs).all():
        raise DataError(f"{where}: node 'attributes' must be finite and of one length on every node",
                        reason="nan")
    edges = np.array([(index[u], index[w]) for u, w in graph.edges], dtype=np.int64).reshape(-1, 2)
    return {"graph_id": 0, "n_nodes": len(nodes), "node_labels": labels,
            "node_attributes": attrs.astype(np.float32).reshape(-1), "n_node_attributes": int(attrs.shape[1]),
            "edges": edges.reshape(-1), "n_edges": int(len(edges))}


def _tu_input_name(folder: Path) -> str:
    """The one TU data set of an input folder (its ``*_A.txt`` prefix, with a graph indicator file)."""
    if not folder.is_dir():
        what = "no such file or folder" if not folder.exists() else "not a folder"
        raise DataError(f"{folder}: {what}; expected {GRAPH_OBJECTS}", reason="missing")
    names = sorted(p.name[: -len("_A.txt")] for p in folder.glob("*_A.txt") if not p.name.startswith("."))
    if len(names) != 1 or not (folder / f"{names[0]}_graph_indicator.txt").is_file():
        raise DataError(f"{folder}: found TU data sets {names} (<NAME>_A.txt files); expected exactly one, "
                        f"with <NAME>_graph_indicator.txt", reason="missing")
    return names[0]


def _tu_input_rows(folder: Path) -> list[dict[str, Any]]:
    """Rows of every graph of a TU input folder, parsed as the reader parses them (no labels needed)."""
    name = _tu_input_name(folder)
    tu = parse_tu(folder, name, labelled=(folder / f"{name}_graph_labels.txt").is_file())
    rows = []
    for g in range(tu.n_graphs):
        row_id = f"{folder.name}/{g}"
        rows.append({"id": row_id, "sample_id": row_id, "source_file": str(tu.f_ind),
                     **_graph_row(*tu.graph_args(g), True, tu.f_ind)})
    return rows


def _graph_row(gid: int, nodes: np.ndarray, edges: np.ndarray, local: np.ndarray,
               node_labels: np.ndarray | None, attrs: np.ndarray | None, problem: DataError | None,
               allow_edgeless: bool, f_ind: Path) -> dict[str, Any]:
    """Payload of one graph, or the DataError of its first problem."""
    if problem is not None:
        raise problem
    if len(nodes) == 0:
        raise DataError(f"{f_ind}: graph {gid} has no nodes (no line of the indicator file "
                        f"names it)", reason="empty")
    le = local[edges] if len(edges) else np.zeros((0, 2), dtype=np.int64)  # (E, 2) local ids
    if not allow_edgeless and not (le[:, 0] != le[:, 1]).any():
        raise DataError(f"{f_ind.with_name(f_ind.name.replace('_graph_indicator', '_A'))}: graph "
                        f"{gid} ({len(nodes)} nodes) has no edges; set graph.source.allow_edgeless"
                        f": true to keep edgeless graphs", reason="degenerate")
    at = attrs[nodes] if attrs is not None else np.zeros((len(nodes), 0))
    return {"graph_id": gid, "n_nodes": int(len(nodes)),
            "node_labels": (node_labels[nodes] if node_labels is not None
                            else np.zeros(0)).astype(np.int64),
            "node_attributes": at.astype(np.float32).reshape(-1),
            "n_node_attributes": int(at.shape[1]),
            "edges": le.astype(np.int64).reshape(-1), "n_edges": int(len(le))}


def _graph_arrays(row: Any, max_nodes: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One table row → ``(n, node_labels, attrs (n, A), undirected edges (E, 2), degree (n,))``,
    cut to the first ``max_nodes`` nodes (the caller decides whether that is allowed)."""
    n_full = int(row.n_nodes)
    labels = np.asarray(row.node_labels, dtype=np.int64)
    a = int(row.n_node_attributes)
    attrs = np.asarray(row.node_attributes, dtype=np.float64)
    edges = np.asarray(row.edges, dtype=np.int64)
    if attrs.size != n_full * a or edges.size != 2 * int(row.n_edges) or labels.size not in (0, n_full):
        raise DataError(f"{row.source_file}: graph {row.sample_id} payload sizes do not match "
                        f"n_nodes={n_full}, n_edges={int(row.n_edges)}, n_node_attributes={a}")
    edges = edges.reshape(-1, 2)
    if edges.size and (edges.min() < 0 or edges.max() >= n_full):
        raise DataError(f"{row.source_file}: graph {row.sample_id} has edges to nodes outside "
                        f"0..{n_full - 1}")
    n = min(n_full, max_nodes)
    keep = (edges[:, 0] < n) & (edges[:, 1] < n) & (edges[:, 0] != edges[:, 1])
    edges = edges[keep]
    adj = np.zeros((n, n), dtype=bool)
    adj[edges[:, 0], edges[:, 1]] = True
    adj[edges[:, 1], edges[:, 0]] = True
    deg = adj.sum(1).astype(np.float64)
    und = np.argwhere(np.triu(adj, 1))  # (E_undirected, 2)
    return n, labels[:n], attrs.reshape(n_full, a)[:n], und, deg


register(GraphModality())
