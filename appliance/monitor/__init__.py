"""``appliance monitor``: a live, read-only view of a fleet from the MQTT topics it publishes.

``state`` turns received messages into per-device state (pure), ``view`` renders it (a rich table
or JSON lines), ``runner`` subscribes to the broker and drives both.
"""
