"""Persistent device state (boot counter, applied twin) as a JSON file in flash.

Written to a temporary file and renamed, so a power cut mid-write leaves the old state.
"""

import json
import os

PATH = "/state.json"


def load_state():
    try:
        with open(PATH) as f:
            st = json.load(f)
        return st if isinstance(st, dict) else {}
    except (OSError, ValueError):
        return {}


def save_state(st):
    with open(PATH + ".tmp", "w") as f:
        json.dump(st, f)
    os.rename(PATH + ".tmp", PATH)
