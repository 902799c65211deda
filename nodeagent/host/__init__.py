"""Adapters for every side effect of the node agent (files under a root, netlink, processes).

Only modules in this package touch the host; mechanisms receive them as constructor arguments.
"""
