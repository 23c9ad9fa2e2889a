"""Capture stage: cameras, streams and files -> ``RawFrame`` at the working resolution."""

from appliance.capture.frame import RawFrame
from appliance.capture.opener import open_source
from appliance.capture.sources import CaptureStats, FrameSource, to_working_size
from appliance.capture.spec import SourceSpec, parse_source

__all__ = ["CaptureStats", "FrameSource", "RawFrame", "SourceSpec", "open_source", "parse_source", "to_working_size"]
