"""Documents from local files or the Hugging Face hub, both through `datasets.load_dataset`.

One code path for both: local files are `load_dataset(builder, data_files=[...], split=...)`
with the builder chosen by extension, a hub dataset is `load_dataset(name, config_name,
split=...)`. What could go wrong (a missing file, an unknown extension, a missing text column,
an empty split) is one `InputError` line that names the file or field and what exists instead.
`datasets` is imported inside the functions: importing this module must stay fast.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flops_fit_core import InputError

from .config import DataConfig

__all__ = ["resolve_files"]

#: Appended to every document. With the `text` builder a document is a line, so the corpus of a
#: text file is the file itself; a newline is also one byte under every tokenizer here.
DOCUMENT_SEPARATOR = "\n"

#: Extension -> `datasets` packaged builder.
_BUILDERS = {".txt": "text", ".text": "text", ".json": "json", ".jsonl": "json"}
_BUILDERS[".parquet"] = "parquet"

#: Compression suffixes `datasets` decompresses on its own; the extension before them counts.
_COMPRESSION = (".gz", ".bz2", ".xz", ".zst", ".lz4")

_GLOB_CHARS = frozenset("*?[")


def _builder_for(path: Path) -> str:
    """The `datasets` builder for one file, from its extension."""
    name = path.name.lower()
    for suffix in _COMPRESSION:
        name = name.removesuffix(suffix)
    extension = Path(name).suffix
    if extension not in _BUILDERS:
        known = ", ".join(sorted(_BUILDERS))
        raise InputError(f"data file {str(path)!r} has an unsupported extension (use {known})")
    return _BUILDERS[extension]


def resolve_files(patterns: tuple[str, ...]) -> tuple[str, list[Path]]:
    """(builder, resolved files) for the configured paths and globs; all of one kind.

    A path that does not exist or a glob that matches nothing is an error naming it. Globs
    expand in sorted order and duplicates are dropped, so the corpus order is reproducible.
    """
    files: list[Path] = []
    for pattern in patterns:
        expanded = os.path.expanduser(pattern)
        if _GLOB_CHARS & set(expanded):
            matches = sorted(p for p in glob.glob(expanded, recursive=True) if Path(p).is_file())
            if not matches:
                raise InputError(f"no data file matches {pattern!r}")
            files.extend(Path(p).resolve() for p in matches)
        elif Path(expanded).is_file():
            files.append(Path(expanded).resolve())
        else:
            raise InputError(f"data file not found: {pattern!r}")
    files = list(dict.fromkeys(files))
    builders = {path: _builder_for(path) for path in files}
    kinds = sorted(set(builders.values()))
    if len(kinds) > 1:
        example = ", ".join(
            f"{next(p.name for p, b in builders.items() if b == k)} ({k})" for k in kinds
        )
        raise InputError(f"data files mix kinds: {example}; use files of one kind")
    return kinds[0], files


def source_identity(config: DataConfig) -> dict[str, Any]:
    """Everything about the source that determines the text, as JSON-able data.

    For files that includes each file's resolved path, size and modification time, so editing a
    file invalidates its cache; a hub dataset is identified by name, configuration and split.
    """
    if config.source == "synthetic":
        return {"kind": "synthetic", **config.synthetic.model_dump()}
    common = {
        "text_field": config.text_field,
        "split": config.split,
        "max_documents": config.max_documents,
    }
    if config.source == "files":
        builder, files = resolve_files(config.files or ())
        stats = [(path, path.stat()) for path in files]
        described = [
            {"path": str(p), "size": s.st_size, "mtime_ns": s.st_mtime_ns} for p, s in stats
        ]
        return {"kind": "files", "builder": builder, "files": described, **common}
    return {
        "kind": "hub",
        "name": config.name,
        "config_name": config.config_name,
        "eval_split": config.eval_split,
        **common,
    }


def load_documents(
    config: DataConfig, split: str, *, cache_dir: Path | None = None, limit: bool = True
) -> Any:
    """The `datasets.Dataset` of one split, checked to have a non-empty string `text_field`.

    `limit` applies `max_documents` (the training split); the held-out split is read whole
    and cut by tokens instead. Local files are converted into `cache_dir` (next to the token
    cache); hub datasets use the user's usual Hugging Face cache.
    """
    import datasets

    if config.source == "files":
        builder, files = resolve_files(config.files or ())
        what = f"data files {', '.join(p.name for p in files[:3])}" + (
            f" (and {len(files) - 3} more)" if len(files) > 3 else ""
        )
        # `datasets` fails on an empty file with no useful message; it holds no documents anyway
        files = [path for path in files if path.stat().st_size > 0]
        if not files:
            raise InputError(f"{what}: every file is empty, so there are no documents")
        args: tuple[Any, ...] = (builder,)
        kwargs: dict[str, Any] = {"data_files": [str(p) for p in files], "split": split}
        if cache_dir is not None:
            kwargs["cache_dir"] = str(cache_dir)
    elif config.source == "hub":
        what = f"hub dataset {config.name!r}"
        args = (config.name, config.config_name)
        kwargs = {"split": split}
    else:  # pragma: no cover - prepare_data never calls this for synthetic data
        raise ValueError("synthetic data has no documents to load")

    try:
        dataset = datasets.load_dataset(*args, **kwargs)
    except InputError:
        raise
    except Exception as exc:  # datasets raises many types; the user needs one line
        raise InputError(f"cannot load {what}, split {split!r}: {_one_line(exc)}") from None

    columns = list(dataset.column_names)
    if config.text_field not in columns:
        raise InputError(
            f"{what} has no text field {config.text_field!r} (fields: {', '.join(columns)})"
        )
    feature = dataset.features[config.text_field]
    if getattr(feature, "dtype", None) not in ("string", "large_string"):
        raise InputError(f"{what}: field {config.text_field!r} holds {feature}, not text")
    if len(dataset) == 0:
        raise InputError(f"{what}, split {split!r}, has no documents")
    if limit and config.max_documents is not None and config.max_documents < len(dataset):
        dataset = dataset.select(range(config.max_documents))
    return dataset.select_columns([config.text_field])


def _one_line(exc: BaseException) -> str:
    """The first line of an exception's message, plus that of its root cause if it has one."""

    def first(error: BaseException) -> str:
        lines = str(error).strip().splitlines()
        return lines[0] if lines else type(error).__name__

    root = exc
    while root.__cause__ is not None or root.__context__ is not None:
        root = root.__cause__ or root.__context__  # type: ignore[assignment]
    return first(exc) if root is exc else f"{first(exc)} ({first(root)})"


def text_batches(dataset: Any, text_field: str, batch_size: int = 1024) -> Iterator[list[str]]:
    """Documents in order, in batches, each followed by `DOCUMENT_SEPARATOR` (null -> empty)."""
    for batch in dataset.iter(batch_size=batch_size):
        yield [(text or "") + DOCUMENT_SEPARATOR for text in batch[text_field]]
