"""Artifacts the role and migration tests deploy and load, made byte for byte the same on every run: a WAR, a
static site, a plain pg_dump of a dataset with its source manifest (row counts and checksums, method
copy-text-md5/1), and a small HTTP server the hosts download from. The WAR, the dataset, its dump and manifest are
the product's own (controlplane.devcloud.samples, which the dev cloud's rehearsal estate deploys too)."""

from __future__ import annotations

import functools
import gzip
import http.server
import io
import tarfile
import threading
from pathlib import Path
from typing import Any

from controlplane.artifacts import sha256_of
from controlplane.devcloud.samples import (
    KST,
    Dataset,
    copy_text,
    make_dataset,
    make_war,
    table_manifest,
    write_dump,
)

__all__ = ["KST", "ArtifactServer", "Dataset", "copy_text", "make_dataset", "make_site", "make_war", "sha256_of",
           "table_manifest", "write_dump"]


# Artifacts and their server ----------------------------------------------------------------------------------


def make_site(path: Path, pages: dict[str, str]) -> Path:
    """A static site as a .tar.gz of pages (relative path -> text); the same bytes on every run."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, text in pages.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_404_172_800
            archive.addfile(info, io.BytesIO(data))
    with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as compressed:
        compressed.write(buffer.getvalue())
    return path


class ArtifactServer:
    """Serves a directory over HTTP on the hosts' gateway address (the hosts route only to this machine)."""

    def __init__(self, directory: Path, address: str) -> None:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer((address, 0), handler)
        self.base = f"http://{address}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass
