"""Files a command writes and reads, made safe: atomic writes, OS errors as one line, no input
overwritten, no symlink followed out of a run directory, no temp file left behind.

Every whole-file write goes through `write_atomic`: a temporary file beside the target,
flushed and fsynced, renamed over it, so a kill at any moment leaves the old file or the new
one. Its temporary files are named `.<name>.<random>.tmp`; a kill between the two steps leaves
one behind, and `remove_temp_files` clears them when the next run of that directory starts.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from .errors import InputError, OutputError

__all__ = [
    "TEMP_SUFFIX",
    "check_output",
    "os_error_cause",
    "output_error",
    "read_inside",
    "read_text",
    "remove_temp_files",
    "write_atomic",
]

TEMP_SUFFIX = ".tmp"

#: What a user should hear for the errors a disk gives, beside the path.
_CAUSES = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EISDIR: "is a directory",
    errno.ENOTDIR: "a path component is not a directory",
    errno.EBUSY: "device or resource busy",
    errno.ENAMETOOLONG: "file name too long",
    errno.ENOENT: "no such file or directory",
    errno.ELOOP: "too many symbolic links",
}


def os_error_cause(exc: OSError) -> str:
    """An `OSError`'s cause in words: `read-only file system`, `no space left on the device`."""
    return _CAUSES.get(exc.errno or 0) or (exc.strerror or str(exc)).lower()


def output_error(exc: OSError, path: Path | str) -> OutputError:
    """An `OSError` met while writing `path` as one line naming the path and the cause."""
    cause = os_error_cause(exc)
    where = exc.filename if exc.filename and str(exc.filename) != str(path) else None
    text = f"cannot write {path}: {cause}" + (f" ({where})" if where else "")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        text += "; free some space and run the same command again (finished results are kept)"
    return OutputError(text)


def write_atomic(path: Path | str, data: str | bytes | Callable[[BinaryIO], object]) -> None:
    """Write a whole file so a crash leaves the old or the new one, never half of either.

    `data` is the file's text or bytes, or a function that writes them to the open binary file
    it is given (`lambda fh: torch.save(state, fh)`), for contents too large to hold twice.
    The file is fsynced before it replaces the old one: this is the only atomic writer.

    An OS error (permission, read-only, full disk, a directory at `path`) is an
    `OutputError` naming the path; no temporary file is left behind.
    """
    path = Path(path)
    if str(path) in ("", "."):
        raise OutputError("cannot write to an empty path: name a file")
    if path.is_dir():
        raise OutputError(f"cannot write {path}: is a directory; name a file inside it")
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
        with os.fdopen(fd, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; keep files as readable as others
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise output_error(exc, path) from None
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def remove_temp_files(folders: Iterable[Path]) -> list[Path]:
    """Remove the temporary files atomic writes left in `folders` (a kill between writing and
    renaming); returns what was removed. Run only while holding the directory's writer lock,
    so no live write's temporary file is taken."""
    removed = []
    for folder in folders:
        try:
            entries = list(Path(folder).iterdir())
        except OSError:
            continue
        for entry in entries:
            ours = entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX)
            if ours and (entry.is_symlink() or entry.is_file()):
                try:
                    entry.unlink()
                except OSError:
                    continue
                removed.append(entry)
    return removed


def read_text(path: Path | str, what: str) -> str:
    """The text of a file the user named, or a one-line `InputError` saying what is wrong
    (`config file not found: x.toml`, `cannot read plan p.json: [Errno 13] Permission denied`)."""
    path = Path(path)
    try:
        return path.read_text()
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {what} {path}: {exc}") from None


def read_inside(root: Path, path: Path, what: str) -> str:
    """The text of `path`, a file of the directory `root`, refusing a symbolic link that leads
    out of `root` (a run directory's files are embedded in reports: a link to /etc/passwd
    must not be)."""
    root, path = Path(root), Path(path)
    try:
        resolved = path.resolve(strict=True)
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}") from None
    except (OSError, RuntimeError) as exc:
        raise InputError(f"cannot read {what} {path}: {exc}") from None
    if not resolved.is_relative_to(root.resolve()):
        raise InputError(
            f"{path} is a symbolic link out of {root} (to {resolved}); not read: replace it "
            "with the file itself"
        )
    try:
        return resolved.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {what} {path}: {exc}") from None


def check_output(
    output: Path,
    inputs: Iterable[Path],
    *,
    force: bool = False,
    is_ours: Callable[[Path], bool] | None = None,
    what: str = "file",
) -> None:
    """Refuse (`OutputError`) to write `output` over one of `inputs` (the same path or the
    same file), or over an existing file `is_ours` does not recognise as what the command
    writes (a table named fit.json, a lock file), unless `force`. A directory at `output`, or
    an empty path, is refused always."""
    output = Path(output)
    if str(output) in ("", "."):
        raise OutputError(f"cannot write the {what} to an empty path: name a file")
    if output.is_dir():
        raise OutputError(f"cannot write the {what} to {output}: it is a directory; name a file")
    for source in inputs:
        if _same_file(output, Path(source)):
            raise OutputError(
                f"refusing to write the {what} to {output}: it is an input of this command; "
                "choose another path with -o"
            )
    if force or is_ours is None or not (output.exists() or output.is_symlink()):
        return
    if output.is_symlink() or not output.is_file() or not is_ours(output):
        raise OutputError(
            f"refusing to overwrite {output}: it is not a {what} flops-fit wrote; choose "
            "another path with -o, or pass --force"
        )


def _same_file(a: Path, b: Path) -> bool:
    if os.path.abspath(a) == os.path.abspath(b):
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False
