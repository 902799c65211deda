"""Telemetry messages: one reading per message, or `batch` readings per message on slow links.

A batch that would not fit the transport's payload limit (1024 bytes on serial) is split in
halves until it does, so raising `batch` can never produce a frame the bridge must drop.
"""

import json


class Batcher:
    def __init__(self, dev_id, boot, limit=1024):
        self.id = dev_id
        self.boot = boot
        self.limit = limit
        self.seq = 0
        self.items = []

    def add(self, reading, batch):
        """Queue one reading; return the encoded messages that are due (often none)."""
        self.items.append(reading)
        if len(self.items) < batch:
            return []
        items, self.items = self.items, []
        return self._pack(items)

    def _pack(self, items):
        m = dict(items[0]) if len(items) == 1 else {"batch": items}
        m["id"] = self.id
        m["seq"] = self.seq
        m["boot"] = self.boot
        b = json.dumps(m).encode()
        if len(b) > self.limit and len(items) > 1:
            h = len(items) // 2
            return self._pack(items[:h]) + self._pack(items[h:])
        self.seq += 1
        return [b]
