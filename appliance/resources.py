"""Where the files shipped with the package live, in a checkout and in an installed wheel alike.

In a checkout (or an editable install) they are the top-level folders ``firmware_configs/`` and
``models/``; a wheel carries the same folders as ``appliance.firmware_configs`` and
``appliance.model_files`` (see ``[tool.setuptools.package-dir]`` in pyproject.toml).
"""

from __future__ import annotations

import os
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent


def _shipped_dir(top_level: str, package: str) -> Path:
    in_checkout = _CHECKOUT / top_level
    if in_checkout.is_dir():
        return in_checkout
    # These folders have no __init__.py, so importlib.resources.files() returns a namespace
    # MultiplexedPath whose str() is not a path; in a wheel they sit inside the package folder.
    return Path(__file__).resolve().parent / package.rsplit(".", 1)[1]


def firmware_configs_dir() -> Path:
    return _shipped_dir("firmware_configs", "appliance.firmware_configs")


def models_dir() -> Path:
    """The models folder; ``APPLIANCE_MODELS_DIR`` points elsewhere (e.g. models provisioned on a data partition)."""
    override = os.environ.get("APPLIANCE_MODELS_DIR")
    if override:
        return Path(override)
    return _shipped_dir("models", "appliance.model_files")


def data_file(name: str) -> Path:
    """A file of ``appliance/data/`` (see its README for origins and licences)."""
    return Path(__file__).resolve().parent / "data" / name


def sample_clip() -> Path:
    """The bundled sample clip (trimmed from OpenCV's vtest.avi) that ``appliance run`` uses by default."""
    return data_file("sample_vtest.mp4")


def systemd_dir() -> Path:
    """The folder holding ``appliance.service`` (``systemd/`` in a checkout)."""
    return _shipped_dir("systemd", "appliance.systemd_files")
