"""`make demo` (`python -m demo`): the whole stack on embedded defaults, sequenced from outside.

It lives beside the distribution, not in it: the shared kernel (`mlsysops`) stands below the
three daemons and imports none of them, while the demo drives all three.
"""
