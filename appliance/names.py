"""Identifier rules shared by the config and the messages: one definition, so they cannot drift.

A device id, zone name or line name becomes part of an MQTT topic or a JSON key the control room
stores; it is a short identifier, never free text.
"""

from __future__ import annotations

from pydantic import Field
from typing_extensions import Annotated

# "-" goes last inside a character class, so extras are inserted before it.
_CHARS = "A-Za-z0-9_"

NAME_PATTERN = rf"^[{_CHARS}-]{{1,64}}$"
"""Device ids, zone and line names, board profile names: 1-64 letters, digits, ``_`` or ``-``."""

OPTIONAL_NAME_PATTERN = rf"^([{_CHARS}-]{{1,64}})?$"
"""The same, or empty (a message envelope before it is stamped)."""

LABEL_PATTERN = rf"^[{_CHARS}.:-]{{1,64}}$"
"""Model names and drop reasons in messages: a name that may also hold ``.`` and ``:``."""

TOPIC_PREFIX_PATTERN = rf"^[{_CHARS}/-]{{1,64}}$"
"""An MQTT topic prefix: names joined by ``/``."""

Name = Annotated[str, Field(pattern=NAME_PATTERN)]
Label = Annotated[str, Field(pattern=LABEL_PATTERN)]
