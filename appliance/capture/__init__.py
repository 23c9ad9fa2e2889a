"""Capture stage: cameras, streams and files -> ``RawFrame`` at the working resolution."""

from appliance.capture.frame import RawFrame
from appliance.capture.sources import CaptureStats, FrameSource, open_source, to_working_size

__all__ = ["CaptureStats", "FrameSource", "RawFrame", "open_source", "to_working_size"]
