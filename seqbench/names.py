"""Names that become paths: data set names, run ids, mirror folders.

A name is checked against a safe character set *before* any path is built from it, so that no
name given on the command line, in a registry file or in a stored config can point outside its
folder (``../x``, ``/etc``, ``a/b``) or hide itself (a leading dot is how temporary and trash
folders are named).
"""

from __future__ import annotations

import re

from seqbench.errors import InputError

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}")
SAFE_CHARACTERS = "letters, digits and _ . + - (not first), at most 128"


def check_name(kind: str, name: str) -> str:
    """``name`` itself when it is one safe path component, else an :class:`InputError`."""
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name) or ".." in name:
        raise InputError(f"{kind} name '{name}' is not allowed: use {SAFE_CHARACTERS}")
    return name


def check_relative(kind: str, path: str) -> str:
    """A relative path of safe components (``raw/amazon-2014``): never absolute, never ``..``."""
    parts = str(path).split("/")
    if not path or not all(SAFE_NAME.fullmatch(part) and ".." not in part for part in parts):
        raise InputError(f"{kind} '{path}' is not allowed: use folder names of {SAFE_CHARACTERS}, separated by /")
    return str(path)
