"""Private files (tokens, the CLI config): written atomically, with mode 0600 from the moment they exist."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["write_private"]


def write_private(path: str | os.PathLike[str], data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically; the file is never readable by others, not even briefly.

    The bytes go to a temporary file in the same folder, created by ``os.open`` with mode 0600 and
    ``O_EXCL`` (never chmod'ed afterwards), flushed to disk, then renamed over the target with
    ``os.replace``. A missing folder is created with mode 0700. A failure leaves the old file as
    it was and removes the temporary one.
    """
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return target
