"""Adapters for every side effect of the node agent (files under a root, netlink, processes).

Only modules in this package touch the host; mechanisms receive them as constructor arguments.
The pure vocabulary the adapters speak (cpulist: the kernel's cpu-list notation; netvalues: what
netlink reports) lives here too, so the layer below the mechanisms never imports them.
"""
