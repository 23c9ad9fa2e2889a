"""Anonymize stage: faces (and heads) hidden in place before anything else sees the frame."""

from appliance.anonymize.anonymizer import Anonymizer, FrameDropped
from appliance.anonymize.blur import hide_regions
from appliance.anonymize.frame import AnonymizedFrame

__all__ = ["AnonymizedFrame", "Anonymizer", "FrameDropped", "hide_regions"]
