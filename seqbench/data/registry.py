"""The data set registry: typed entries loaded from ``datasets.yaml``.

The YAML file ships inside the package (``seqbench/data/datasets.yaml``; the repository's top-level
``datasets.yaml`` is a link to it). A second file named by ``SEQBENCH_DATASETS`` adds entries or
overrides built-in ones, so users can register their own data without editing the package.
"""

from __future__ import annotations

import dataclasses
import os
import re
import urllib.parse
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from seqbench.coerce import coerce_fields
from seqbench.errors import InputError, did_you_mean, unknown_name
from seqbench.names import check_name, check_relative

BUILTIN_REGISTRY = Path(__file__).with_name("datasets.yaml")
REGISTRY_ENV = "SEQBENCH_DATASETS"
DEDUP_MODES = ("none", "exact", "first")
SPLIT_KINDS = ("leave-one-out", "temporal")
ROLES = ("interactions", "attributes")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class SourceFile:
    """One file a data set is built from: where to get it and how to read it."""

    role: str  # "interactions" or "attributes"
    format: str  # a parser name in seqbench.data.parsers
    url: str
    sha256: str | None  # of the file itself, or of ``member`` for archives; None = unverified
    mirror_folder: str
    member: str | None = None  # path inside a zip archive at ``url``
    max_bytes: int | None = None  # size cap of the download (None: Content-Length + a margin)
    # The ``table`` format's column names by role (user, item, timestamp, rating); None: the defaults.
    columns: dict[str, str] | None = field(default=None, hash=False)

    @property
    def is_local(self) -> bool:
        """A file on this machine (an absolute path; relative ones are resolved against the registry file)."""
        return local_path(self.url) is not None

    @property
    def file_name(self) -> str:
        """The name the file has in the mirror and in the raw cache (the lookup rule)."""
        if self.member is not None:
            return PurePosixPath(self.member).name
        return self.url.rstrip("/").rsplit("/", 1)[-1]

    @property
    def archive_name(self) -> str | None:
        return self.url.rstrip("/").rsplit("/", 1)[-1] if self.member is not None else None


@dataclass(frozen=True)
class Recipe:
    """How raw interactions become sequences (protocol.md, Data)."""

    dedup: str = "first"  # none | exact (identical rows) | first (first event per user-item pair)
    user_k: int = 5  # users with fewer interactions are removed (iterated with item_k)
    item_k: int = 5
    min_rating: float | None = None  # keep only rows with rating >= this, where ratings exist


@dataclass(frozen=True)
class SplitConfig:
    kind: str = "leave-one-out"
    quantile: float = 0.95  # temporal only: the global timestamp quantile of the test boundary


@dataclass(frozen=True)
class SyntheticParams:
    """Size and seed of the generated data set; the defaults make a ~1-2 s CPU epoch."""

    users: int = 2000
    items: int = 500
    length: int = 30  # mean sequence length
    seed: int = 0
    # "occurring": the catalogue is the items that occur (the original recipe, kept so that data
    # prepared before stays identical); "full": every id 1..items is in the catalogue, interacted
    # with or not, as in a real shop, and generation is vectorised (10^6 items in seconds).
    catalog: str = "occurring"


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    description: str
    citation: str
    license: str
    files: tuple[SourceFile, ...]
    recipe: Recipe
    split: SplitConfig
    synthetic: SyntheticParams | None = None
    manual_download: bool = False  # the source needs a person to accept terms before downloading

    def files_with_role(self, role: str) -> list[SourceFile]:
        return [source for source in self.files if source.role == role]

    def to_dict(self) -> dict[str, Any]:
        """The entry as plain data, for meta.json (the recipe a prepared set was built with)."""

        return asdict(self)


@dataclass
class Registry:
    entries: dict[str, DatasetEntry] = field(default_factory=dict)

    def names(self) -> list[str]:
        return list(self.entries)

    def get(self, name: str) -> DatasetEntry:
        if name not in self.entries:
            raise InputError(unknown_name("data set", name, self.entries))
        return self.entries[name]


def _build(cls: type, data: dict[str, Any] | None, where: str) -> Any:
    """Instantiate a dataclass from YAML, naming the entry when a key is unknown or missing, or
    a value does not have the field's type (``user_k: abc``, ``sha256: 12345``)."""
    if data is not None and not isinstance(data, dict):
        raise InputError(f"bad registry entry {where}: expected a mapping of {cls.__name__} fields, got {data!r}")
    try:
        values = coerce_fields(cls, data or {})
        if "sha256" in values and values["sha256"] is not None and not _SHA256.fullmatch(values["sha256"]):
            raise InputError(f"sha256={values['sha256']!r} is not 64 hex digits (or null)")
        return cls(**values)
    except TypeError as error:
        raise InputError(f"bad registry entry {where}: {error}; see seqbench/data/datasets.yaml for the layout") from None
    except InputError as error:
        raise InputError(f"bad registry entry {where}: {error.message}") from None


# The keys a data set entry may have (the DatasetEntry fields a YAML file sets).
ENTRY_KEYS = ("description", "citation", "license", "files", "recipe", "split", "synthetic", "manual_download")


def _entry(name: str, data: dict[str, Any], origin: Path) -> DatasetEntry:
    where = f"'{name}' in {origin}"
    check_name("data set", name)  # it becomes the folder of the prepared data
    if not isinstance(data, dict):
        raise InputError(f"bad registry entry {where}: expected a mapping")
    unknown = sorted(set(map(str, data)) - set(ENTRY_KEYS))
    if unknown:  # a misspelt key (spilt:, recipie:) would otherwise leave the defaults in place silently
        raise InputError(f"bad registry entry {where}: unknown key '{unknown[0]}'{did_you_mean(unknown[0], ENTRY_KEYS)} "
                         f"(valid: {', '.join(ENTRY_KEYS)})")
    manual = data.get("manual_download", False)
    if not isinstance(manual, bool):  # bool("false") is True
        raise InputError(f"bad registry entry {where}: manual_download must be true or false (unquoted), got {manual!r}")
    if not isinstance(data.get("files") or [], list):
        raise InputError(f"bad registry entry {where}: 'files' must be a list of file entries")
    files = tuple(_anchored(_build(SourceFile, source, where), origin) for source in data.get("files") or [])
    synthetic = data.get("synthetic")
    entry = DatasetEntry(
        name=name,
        description=str(data.get("description", "")),
        citation=str(data.get("citation", "")),
        license=str(data.get("license", "")),
        files=files,
        recipe=_build(Recipe, data.get("recipe"), where),
        split=_build(SplitConfig, data.get("split"), where),
        synthetic=_build(SyntheticParams, synthetic, where) if synthetic is not None else None,
        manual_download=manual,
    )
    check_entry(entry, where)
    return entry


def _anchored(source: SourceFile, registry_file: Path) -> SourceFile:
    """A relative local path is relative to the registry file that names it, not to the cwd."""
    path = local_path(source.url)
    if path is None or path.is_absolute():
        return source
    return dataclasses.replace(source, url=str((Path(registry_file).resolve().parent / path).resolve()))


def check_entry(entry: DatasetEntry, where: str) -> None:
    if entry.recipe.dedup not in DEDUP_MODES:
        raise InputError(f"bad registry entry {where}: dedup '{entry.recipe.dedup}' is not one of {', '.join(DEDUP_MODES)}")
    if entry.split.kind not in SPLIT_KINDS:
        raise InputError(f"bad registry entry {where}: split '{entry.split.kind}' is not one of {', '.join(SPLIT_KINDS)}")
    if not 0.0 < entry.split.quantile < 1.0:
        raise InputError(f"bad registry entry {where}: split quantile must be in (0, 1), got {entry.split.quantile}")
    if entry.synthetic is None and not entry.files_with_role("interactions"):
        raise InputError(f"bad registry entry {where}: it needs a file with role 'interactions'")
    for key in ("user_k", "item_k"):
        if getattr(entry.recipe, key) < 0:
            raise InputError(f"bad registry entry {where}: {key} must be >= 0, got {getattr(entry.recipe, key)}")
    for source in entry.files:
        if source.role not in ROLES:
            raise InputError(f"bad registry entry {where}: file role '{source.role}' is not one of {', '.join(ROLES)}")
        try:
            check_relative("mirror_folder", source.mirror_folder)
            check_name("raw file", source.file_name)
            check_url(source)
        except InputError as error:
            raise InputError(f"bad registry entry {where}: {error.message}") from None


def read_registry_file(path: Path) -> dict[str, DatasetEntry]:
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"cannot read data set registry {path}: it is not UTF-8 text") from None
    except (OSError, yaml.YAMLError) as error:
        raise InputError(f"cannot read data set registry {path}: {str(error).splitlines()[0]}") from None
    datasets = (document or {}).get("datasets") if isinstance(document, dict) else None
    if not isinstance(datasets, dict):
        raise InputError(f"data set registry {path} has no 'datasets:' mapping")
    return {str(name): _entry(str(name), data, Path(path)) for name, data in datasets.items()}


ALLOWED_SCHEMES = ("https", "http")


def local_path(url: str) -> Path | None:
    """The path of a local source (``/data/x.csv``, ``x.csv``); None for a URL (``file://`` included:
    a registry names local files by plain paths)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "" or (len(parts.scheme) == 1 and url[1:3] in (":\\", ":/")):  # a path (or C:\ on Windows)
        return Path(url)
    return None


def check_url(source: SourceFile) -> None:
    """https, or http for a source that has nothing else and whose checksum is in the registry;
    or a local file (read where it is, checksummed, never downloaded)."""
    if source.is_local:
        return
    scheme = urllib.parse.urlsplit(source.url).scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise InputError(f"URL {source.url!r} has scheme '{scheme}': only https (or http with a sha256) is fetched, "
                         "and a local file is named by its plain path; fix the registry entry")
    if scheme == "http" and source.sha256 is None:
        raise InputError(f"URL {source.url} is plain http and the entry has no sha256: use https, or add the file's sha256 to the registry entry")


def load_registry(extra: Path | None = None) -> Registry:
    """The built-in registry, plus ``extra`` (or the file in $SEQBENCH_DATASETS) on top."""
    entries = read_registry_file(BUILTIN_REGISTRY)
    extra_path = extra or (Path(os.environ[REGISTRY_ENV]) if os.environ.get(REGISTRY_ENV) else None)
    if extra_path is not None:
        entries.update(read_registry_file(extra_path))
    return Registry(entries)
