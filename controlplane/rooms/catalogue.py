"""The catalogue's files: every *.yml / *.yaml under a directory (rooms/ by default), read into entries that keep
their file and line, so that each finding names where to fix it. A file is a mapping of `version` and any of the
sections sites, centres, rooms and bridges, each a list of entries. Anchors and aliases are refused: a catalogue is
data to read, not a graph to expand."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from controlplane.rooms.domain import (
    CATALOGUE_VERSION,
    SECTIONS,
    Catalogue,
    CatalogueRefused,
    Entry,
    Finding,
    Network,
    build_catalogue,
)

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_FILES = 200
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def catalogue_files(directory: Path) -> list[Path]:
    """The catalogue's files under `directory`, in a stable order (their path relative to it)."""
    if not directory.is_dir():
        raise CatalogueRefused([Finding(str(directory), 0, "catalogue", "is not a directory")])
    files = sorted(p for p in directory.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file())
    if not files:
        raise CatalogueRefused([Finding(str(directory), 0, "catalogue", "has no *.yml or *.yaml file")])
    if len(files) > MAX_FILES:
        raise CatalogueRefused([Finding(str(directory), 0, "catalogue", f"has more than {MAX_FILES} files")])
    return files


def read_catalogue(directory: Path, *, networks: Sequence[Network], agencies: Iterable[str]) -> Catalogue:
    """The catalogue of the directory's files, or CatalogueRefused with every finding of every file."""
    entries: list[Entry] = []
    findings: list[Finding] = []
    for path in catalogue_files(directory):
        name = str(Path(directory.name) / path.relative_to(directory))  # e.g. rooms/sites.yml
        try:
            entries.extend(read_entries(name, path.read_bytes()))
        except CatalogueRefused as refused:
            findings.extend(refused.findings)
    if findings:
        raise CatalogueRefused(findings)
    return build_catalogue(entries, networks=networks, agencies=agencies)


def read_entries(name: str, content: bytes) -> list[Entry]:
    """The entries of one file's content (`name` is how findings call the file)."""
    if len(content) > MAX_FILE_BYTES:
        raise CatalogueRefused([Finding(name, 0, "file", f"is over {MAX_FILE_BYTES // (1024 * 1024)} MiB")])
    try:
        text = content.decode("utf-8")
        for event in yaml.parse(text, Loader=_LOADER):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                line = event.start_mark.line + 1 if event.start_mark else 0
                raise CatalogueRefused([Finding(name, line, "file",
                                                "YAML anchors and aliases are not allowed in the catalogue")])
        root = yaml.compose(text, Loader=_LOADER)
    except UnicodeDecodeError:
        raise CatalogueRefused([Finding(name, 0, "file", "is not UTF-8 text")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CatalogueRefused([Finding(name, mark.line + 1 if mark else 0, "file", f"not valid YAML: {problem}")]) \
            from None
    if root is None:
        return []
    if not isinstance(root, yaml.MappingNode):
        raise CatalogueRefused([Finding(name, root.start_mark.line + 1, "file",
                                        f"must be a mapping of version and {', '.join(SECTIONS)}")])
    findings: list[Finding] = []
    entries: list[Entry] = []
    constructor = yaml.SafeLoader.__new__(yaml.SafeLoader)
    yaml.constructor.SafeConstructor.__init__(constructor)
    sections = {_scalar(key, constructor): (key, value) for key, value in root.value}
    version = sections.pop("version", None)
    if version is None or _plain(version[1], constructor) != CATALOGUE_VERSION:
        line = version[0].start_mark.line + 1 if version else 1
        findings.append(Finding(name, line, "version", f"must be {CATALOGUE_VERSION} (the catalogue's format)"))
    for section, (key, node) in sections.items():
        if section not in SECTIONS:
            findings.append(Finding(name, key.start_mark.line + 1, str(section),
                                    f"unknown section (known: version, {', '.join(SECTIONS)})"))
        elif not isinstance(node, yaml.SequenceNode):
            findings.append(Finding(name, node.start_mark.line + 1, section, "must be a list of entries"))
        else:
            for index, item in enumerate(node.value):
                if not isinstance(item, yaml.MappingNode):
                    findings.append(Finding(name, item.start_mark.line + 1, f"{section}[{index}]",
                                            "must be a mapping of fields"))
                    continue
                values = {str(_scalar(k, constructor)): _plain(v, constructor) for k, v in item.value}
                lines = {str(_scalar(k, constructor)): k.start_mark.line + 1 for k, _ in item.value}
                entries.append(Entry(section, name, item.start_mark.line + 1, index, values, lines))
    if findings:
        raise CatalogueRefused(findings)
    return entries


def _scalar(node: yaml.Node, constructor: yaml.constructor.SafeConstructor) -> Any:
    return _plain(node, constructor) if isinstance(node, yaml.ScalarNode) else None


def _plain(node: yaml.Node, constructor: yaml.constructor.SafeConstructor) -> Any:
    """A node as plain Python data, typed the way yaml.safe_load types it."""
    return constructor.construct_object(node, deep=True)
