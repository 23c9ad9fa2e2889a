"""The durable store-and-forward outbox: rows (what is stored), the store (the SQLite file), the
writer (seq allocation, and holding messages while the disk refuses them)."""
