"""The boot half of OTA (ota.py has the rest): which slot this boot runs, trial or rollback.

Kept apart from ota.py so a boot without an update in progress loads only this: MicroPython never
frees the names a loaded module interned, and the heap budget after boot is 24 KB.
"""

import json
import os

PTR = "/ota.json"
ROOT = "/.ota/"  # a dot: never taken for a package named ota (the module ota.py)
MARK = "/.mlsysops-release"  # written by every serial deploy


def mark():
    try:
        with open(MARK) as f:
            return f.read(64)
    except OSError:
        return ""


def pointer():
    try:
        with open(PTR) as f:
            p = json.load(f)
        return p if isinstance(p, dict) else {}
    except (OSError, ValueError):
        return {}


def save(p):
    with open(PTR + ".tmp", "w") as f:
        json.dump(p, f)
    os.rename(PTR + ".tmp", PTR)


def boot(path):
    """Called by main.py before the app is imported: the slot to run, put first in `path`."""
    p = pointer()
    if not p:
        return p
    t = p.get("t")
    m = mark()
    if p.get("base") != m:  # a serial deploy replaced the root since: it wins
        p = {"hi": p.get("hi", 0), "base": m}
    elif t == 1:
        p["t"] = 2
    elif t == 2:  # the trial boot ended without a confirmation
        p = {"s": p["p"], "r": p["pr"], "v": p["pv"], "hi": p["hi"], "base": m, "rb": p["r"]}
    else:
        t = -1
    if t != -1:
        save(p)
    if p.get("s"):
        path.insert(0, ROOT + p["s"])
    return p
