"""Board support: one module per board family with the same small set of names.

Every HAL module provides: NAME, SENSORS, freq(hz=None), freq_ok(hz), sense(name),
uart(cfg) -> object with read() -> bytes|None and write(bytes), load_state() -> dict,
save_state(dict), async net_up(cfg), async tcp_open(host, port, tls, ca) -> connection with
read()/write()/close(), reset(). Only the selected module is imported, so a board never loads
the drivers of another.
"""


def load(board):
    return getattr(__import__("hal." + board), board)
