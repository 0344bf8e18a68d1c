"""
The user's own token data: a .csv, .tsv or .jsonl file of texts -> a TokenDataset, validated so that a bad file
fails here in one line that names the file, the row (csv/tsv: data rows from 1, the header not counted) or the
line (jsonl), and the fix.

    ds = load_token_file("reviews.csv", seed=0, tokenizer="words", max_len=64)
    ds.task, ds.summary()

The columns (csv/tsv header, case-insensitive) or the keys (jsonl) decide the task:
    text,label       classify   one label per text
    text,tags        tag        whitespace-separated tags, exactly one per source token
    source,target    seq2seq    target split with target_tokenizer (words by default: "HH AH L OW")
    text             next-token a language model over the texts
plus an optional `split` column / key with values train / test. Without it, a seeded split (split_keys) over the
distinct source texts holds out test_frac of them: a text never lands in both splits.

.csv is comma-separated and .tsv tab-separated, both UTF-8 (a byte-order mark is fine) with a header row; .csv
follows the usual quoting ("a, b" keeps its comma), .tsv has no quoting (a text may hold quotes and commas, not
tabs). .jsonl holds one JSON object per line, e.g. {"text": "so good", "label": "pos"}; blank lines are skipped.
Vocabularies come from the training split only (a token seen only in test encodes as <unk>), at most max_vocab
ids; classify / tag labels are sorted, and every test label must occur in training.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from edgernn.data.checks import first_line
from edgernn.data.tokens import TokenDataset, split_keys
from edgernn.errors import ConfigError, DataError
from edgernn.runtimes.vocab import TOKENIZERS, Vocab, tokenize

SUFFIXES = (".csv", ".tsv", ".jsonl")
TASK_COLUMNS = {  # column set (without `split`) -> task
    ("text", "label"): "classify",
    ("text", "tags"): "tag",
    ("source", "target"): "seq2seq",
    ("text",): "next-token",
}
ACCEPTED = " | ".join(",".join(cols) for cols in TASK_COLUMNS) + " (each with an optional split column)"


def load_token_file(path, seed: int = 0, tokenizer: str = "chars", target_tokenizer: str = "words",
                    max_vocab: int | None = None, max_len: int = 64, test_frac: float = 0.1) -> TokenDataset:
    """Read, validate and split a token file (formats and columns: the module docstring)."""
    path = Path(path)
    _check_options(tokenizer, target_tokenizer, max_vocab, max_len, test_frac)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{path}: unsupported extension {suffix or '(none)'!r} for token data; use "
                        f"{', '.join(SUFFIXES)} (columns {ACCEPTED})")
    text = _read_text(path)
    if suffix == ".jsonl":
        cols, records = _jsonl_records(path, text)
        where = "line"
    else:
        cols, records = _table_records(path, text, "\t" if suffix == ".tsv" else ",")
        where = "row"
    task = TASK_COLUMNS[tuple(c for c in cols if c != "split")]
    has_split = "split" in cols

    src_col = "source" if task == "seq2seq" else "text"
    rows = []  # (number, source tokens, target, split)
    for n, rec in records:
        at = f"{path}: {where} {n}"
        raw = rec.get(src_col)
        if raw is None or not raw.strip():
            raise DataError(f"{at}: empty {src_col}; every {where} needs a {src_col} (or delete the {where})")
        src = tokenize(raw, tokenizer)
        if len(src) > max_len:
            raise DataError(f"{at}: {src_col} has {len(src)} tokens (tokenizer {tokenizer}), more than the limit "
                            f"{max_len}; --max-len raises it (or shorten the {src_col})")
        tgt = _target(task, rec, src, at, where, tokenizer, target_tokenizer, max_len)
        split = None
        if has_split:
            split = (rec.get("split") or "").strip().lower()
            if split not in ("train", "test"):
                raise DataError(f"{at}: split must be train or test, got {rec.get('split')!r}")
        rows.append((n, src, tgt, split))
    if not rows:
        raise DataError(f"{path}: no data {where}s after the header; expected {ACCEPTED}")

    if has_split:
        how = "split column"
        is_test = [r[3] == "test" for r in rows]
        if all(is_test):
            raise DataError(f"{path}: all {len(rows)} {where}s have split=test, none is train; mark some train "
                            "(or drop the split column for a seeded split)")
        if not any(is_test):
            raise DataError(f"{path}: all {len(rows)} {where}s have split=train, none is test; mark some test "
                            "(or drop the split column for a seeded split)")
    else:
        keys = {tuple(r[1]) for r in rows}
        if len(keys) < 2:
            raise DataError(f"{path}: only {len(keys)} distinct {src_col} in {len(rows)} {where}s: a seeded split "
                            "needs at least 2 (one to train on, one to test); add rows")
        _, test_keys = split_keys(list(keys), test_frac, seed)
        is_test = [tuple(r[1]) in test_keys for r in rows]
        how = f"seeded split by {src_col} (seed {seed}, test_frac {test_frac:g})"
    train = [r for r, t in zip(rows, is_test) if not t]
    test = [r for r, t in zip(rows, is_test) if t]

    labels = _labels(task, path, where, train, test)
    src_train = [r[1] for r in train]
    tgt_train = [r[2] for r in train]
    src_vocab = Vocab.build(src_train, max_size=max_vocab)
    tgt_vocab = Vocab.build(tgt_train, max_size=max_vocab) if task == "seq2seq" else None
    desc = (f"{task} from {path.name}: {len(train):,} train / {len(test):,} test {where}s ({how}), tokenizer "
            f"{tokenizer}, source vocabulary {len(src_vocab):,}")
    if task == "seq2seq":
        desc += f", target tokenizer {target_tokenizer}, target vocabulary {len(tgt_vocab):,}"
    if labels:
        desc += f", {len(labels)} {'classes' if task == 'classify' else 'tags'}"
    return TokenDataset(
        name=path.stem, task=task, tokenizer=tokenizer,
        src_train=src_train, tgt_train=tgt_train,
        src_test=[r[1] for r in test], tgt_test=[r[2] for r in test],
        src_vocab=src_vocab, tgt_vocab=tgt_vocab, labels=labels,
        refs_test=[[r[2]] for r in test] if task == "seq2seq" else None,
        description=desc, source=str(path))


def _check_options(tokenizer, target_tokenizer, max_vocab, max_len, test_frac) -> None:
    for what, tok in (("tokenizer", tokenizer), ("target tokenizer", target_tokenizer)):
        if tok not in TOKENIZERS:
            raise ConfigError(f"unknown {what} {tok!r}; choose one of: {', '.join(TOKENIZERS)}")
    if max_vocab is not None and int(max_vocab) < 5:
        raise ConfigError(f"max vocabulary {max_vocab} leaves no room for a token beside the 4 specials; use 5 or more")
    if int(max_len) < 1:
        raise ConfigError(f"max length {max_len} must be at least 1 token")
    if not 0.0 < float(test_frac) < 1.0:
        raise ConfigError(f"test fraction {test_frac} must be between 0 and 1 (exclusive)")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise DataError(f"{path}: file not found") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); re-save it as UTF-8") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or first_line(exc)})") from exc


def _task_columns(path: Path, cols: list, what: str) -> list:
    """The normalized column names if they are an accepted set, else a DataError naming the accepted sets."""
    if len(set(cols)) != len(cols):
        dup = sorted({c for c in cols if cols.count(c) > 1})
        raise DataError(f"{path}: {what} names {', '.join(dup)} more than once; expected {ACCEPTED}")
    if tuple(sorted(c for c in cols if c != "split")) not in {tuple(sorted(k)) for k in TASK_COLUMNS}:
        raise DataError(f"{path}: unknown {what} {','.join(cols) or '(empty)'!r}; expected {ACCEPTED}")
    # canonical order: the TASK_COLUMNS key, then split
    key = next(k for k in TASK_COLUMNS if sorted(k) == sorted(c for c in cols if c != "split"))
    return list(key) + (["split"] if "split" in cols else [])


def _table_records(path: Path, text: str, delimiter: str) -> tuple[list, list]:
    """Header columns and (data row number from 1, {column: value}) per non-blank row."""
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, quoting=quoting, strict=True)
    kind = "TSV" if delimiter == "\t" else "CSV"
    try:
        header = next(reader, None)
        if header is None or not any(h.strip() for h in header):
            raise DataError(f"{path}: empty file; expected a header row {ACCEPTED}, then one row per example")
        names = [h.strip().lower() for h in header]
        cols = _task_columns(path, names, "header")
        records, n = [], 0
        for n, row in enumerate(reader, start=1):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # a blank line holds no data
            if len(row) != len(names):
                hint = " (quote a text that holds a comma: \"a, b\")" if delimiter == "," else ""
                raise DataError(f"{path}: row {n}: {len(row)} fields but the header has {len(names)}{hint}")
            records.append((n, dict(zip(names, row))))
    except csv.Error as exc:
        fix = 'quote a field whole, doubling quotes inside: "say ""hi"""' if kind == "CSV" else "fix the row"
        raise DataError(f"{path}: row {n + 1} (line {reader.line_num}): not readable as {kind} "
                        f"({first_line(exc)}); {fix}") from exc
    if not records:
        raise DataError(f"{path}: header only, no data rows; add one row per example under {','.join(header)}")
    return cols, records


def _jsonl_records(path: Path, text: str) -> tuple[list, list]:
    """Keys of the first object and (line number, {key: value as text}) per non-blank line; every object has
    the same keys (a missing label / target / tags is reported as such)."""
    cols, first, records = None, None, []
    for n, line in enumerate(text.split("\n"), start=1):  # not splitlines: JSON strings may hold U+2028
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {n}: invalid JSON ({exc.msg} at column {exc.colno}); write one "
                            "object per line, e.g. {\"text\": \"...\", \"label\": \"...\"}") from exc
        if not isinstance(obj, dict):
            raise DataError(f"{path}: line {n}: a JSON {type(obj).__name__}, not an object; write one object "
                            "per line, e.g. {\"text\": \"...\", \"label\": \"...\"}")
        keys = [str(k).strip().lower() for k in obj]
        if cols is None:
            cols, first = _task_columns(path, keys, f"keys on line {n}"), n
        elif set(keys) != set(cols):
            missing = [c for c in cols if c not in keys]
            if set(keys) < set(cols) and missing[0] != "split":
                raise DataError(f"{path}: line {n}: missing {missing[0]!r} (every line needs "
                                f"{', '.join(cols)}, as on line {first})")
            raise DataError(f"{path}: line {n}: keys {', '.join(keys) or '(none)'} differ from line {first}'s "
                            f"{', '.join(cols)}; give every line the same keys")
        rec = {}
        for k, v in zip(keys, obj.values()):
            if isinstance(v, list) and k in ("tags", "target") and all(isinstance(t, (str, int, float)) for t in v):
                v = " ".join(str(t) for t in v)  # a list of tags / target tokens is the same as a spaced string
            elif isinstance(v, (int, float)) and not isinstance(v, bool) and k == "label":
                v = str(v)  # numeric class labels (0, 1) are names like any other
            elif v is not None and not isinstance(v, str):
                raise DataError(f"{path}: line {n}: {k} is a JSON {type(v).__name__}; expected a string")
            rec[k] = v
        records.append((n, rec))
    if cols is None:
        raise DataError(f"{path}: no data lines; expected one JSON object per line with keys {ACCEPTED}")
    return cols, records


def _target(task, rec, src, at, where, tokenizer, target_tokenizer, max_len):
    """The row's target: a label string, a tag list (one per source token), target tokens, or [] (next-token)."""
    if task == "classify":
        label = (rec.get("label") or "").strip()
        if not label:
            raise DataError(f"{at}: empty or missing label; give every {where} a label (or delete the {where})")
        return label
    if task == "tag":
        tags = (rec.get("tags") or "").split()
        if len(tags) != len(src):
            raise DataError(f"{at}: {len(tags)} tags for {len(src)} tokens (tokenizer {tokenizer}); give exactly "
                            "one whitespace-separated tag per token")
        return tags
    if task == "seq2seq":
        raw = rec.get("target") or ""
        tgt = tokenize(raw, target_tokenizer)
        if not tgt:
            raise DataError(f"{at}: empty or missing target; give every {where} a target (or delete the {where})")
        if len(tgt) > max_len:
            raise DataError(f"{at}: target has {len(tgt)} tokens (target tokenizer {target_tokenizer}), more than "
                            f"the limit {max_len}; --max-len raises it (or shorten the target)")
        return tgt
    return []


def _labels(task, path, where, train, test) -> list:
    """classify / tag: the sorted training labels; a set of one class, or a test label never seen in training,
    is refused (the model could never predict it)."""
    if task == "classify":
        labels = sorted({r[2] for r in train})
        every = sorted({r[2] for r in train + test})
        if len(every) < 2:
            raise DataError(f"{path}: every {where} has the label {every[0]!r}; a classifier needs at least 2 "
                            "classes: add examples of another class")
        if len(labels) < 2:
            raise DataError(f"{path}: the training split has only the label {labels[0]!r}; a classifier needs at "
                            "least 2 classes in training: mark more rows train")
        known = set(labels)
        for n, _, label, _ in test:
            if label not in known:
                raise DataError(f"{path}: {where} {n}: label {label!r} is in the test split but never in training; "
                                "add training examples of it (or a split column that puts one in train)")
        return labels
    if task == "tag":
        labels = sorted({t for r in train for t in r[2]})
        known = set(labels)
        for n, _, tags, _ in test:
            for t in tags:
                if t not in known:
                    raise DataError(f"{path}: {where} {n}: tag {t!r} is in the test split but never in training; "
                                    "add training examples of it (or a split column that puts one in train)")
        return labels
    return []
