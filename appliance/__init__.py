"""Edge appliance for privacy-preserving crowd monitoring.

Data flows one way through one stage per sub-package:

    capture  ->  anonymize  ->  analyze  ->  publish
    (frames)     (faces blurred   (counts,     (egress policy -> outbox -> MQTT)
                  in place)        zones, flags)

with ``health`` beside it. Nothing but typed, anonymized aggregates ever reaches ``publish``.
"""

__version__ = "0.1.0"
