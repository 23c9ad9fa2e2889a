"""Sign texts per language, from ``translations/{language}.yaml`` (one file per language, same keys)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, get_args

import yaml

from appliance.config.schema import SignLanguage
from appliance.errors import InputError

TRANSLATIONS_DIR = Path(__file__).resolve().parent / "translations"
LANGUAGES = get_args(SignLanguage)


def load_texts(language: str) -> Dict[str, str]:
    """The sign's texts in ``language``; an unknown language is bad input (exit 2)."""
    if language not in LANGUAGES:
        raise InputError(f"unknown sign language {language!r} (known: {', '.join(LANGUAGES)})", field="language")
    path = TRANSLATIONS_DIR / f"{language}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {str(k): str(v) for k, v in data.items()}
