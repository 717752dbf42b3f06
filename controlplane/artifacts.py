"""The artifacts directory: the only place on the control plane's machine that jobs copy files from.

A caller names a file (an application archive, a database dump, a manifest) relative to the directory, or by an
absolute path inside it. The name is resolved with every symlink followed, so `../../etc/shadow`, an absolute path
elsewhere and a link that leads out of the directory are all refused: nothing else of this machine reaches a host.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


class ArtifactError(ValueError):
    """A file name that does not lead to a file inside the artifacts directory (the reason is the message)."""


def resolve_artifact(directory: Path, name: object) -> Path:
    """The file `name` stands for, as a real path inside `directory`; ArtifactError otherwise."""
    if not isinstance(name, str) or not name.strip() or "\x00" in name:
        raise ArtifactError(f"a file name in the artifacts directory {directory}")
    base = directory.resolve()
    path = (base / name).resolve()  # an absolute name replaces the base; links are followed
    if not path.is_relative_to(base):
        raise ArtifactError(f"{name!r} is outside the artifacts directory {directory}: copy the file there "
                            "(CP_ARTIFACTS_DIR) or give a URL the hosts download from")
    if not path.is_file():
        raise ArtifactError(f"no file {name!r} in the artifacts directory {directory}")
    return path


def sha256_of(path: Path) -> str:
    """`sha256:<hex>` of a file, as artifact checksums are written; read in blocks (a dump may be large)."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"
