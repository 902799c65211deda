"""Deploying code to far-edge boards: the raw-REPL protocol, releases, and the flasher.

Layers (checked by import-linter): `channel` (reads that say what happened) < `rawrepl` (the
protocol state machine over any byte channel) < `device` (file operations as tiny programs run
through exec) < `flasher` (plan → write → verify → rename → delete → config → reboot).
`release` builds what is deployed (compiled with mpy-cross for the board's .mpy version) and
`plan` decides, without I/O, what to write, skip and delete.
"""
