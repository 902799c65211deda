"""Mechanism plugins: each one turns a section of the profile into knob writes.

Discovered through the `mlsysops.nodeagent.mechanisms` entry-point group; see base.py for
the contract every plugin implements.
"""
