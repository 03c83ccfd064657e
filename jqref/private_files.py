"""Files only their owner reads (records holding TLS keys, scheduler files),
written whole or not at all."""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile


def replace_privately(path: pathlib.Path, text: str, partial_prefix: str) -> None:
    """Write `text` to a temporary file beside `path` (mode 0600, named with
    `partial_prefix`), sync it, and rename it over `path`: neither a crash nor
    a full disk leaves half a file, and no other user reads it. The temporary
    file is removed if anything fails."""
    fd, partial = tempfile.mkstemp(dir=path.parent, prefix=partial_prefix)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
