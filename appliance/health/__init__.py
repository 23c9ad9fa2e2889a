"""Health beside the pipeline: the overall state and the health message (``monitor``), the clock
check, the watchdog and systemd notifications. Import the module you need: ``monitor`` brings in
the publish stage's message types, which the others do not need."""
