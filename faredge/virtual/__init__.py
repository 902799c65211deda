"""Host-side tooling that runs our MicroPython firmware without hardware.

- `VirtualBoard(device_config, workdir=None)`: the firmware on the serial transport inside the real
  MicroPython (WebAssembly, under Node.js); `.port` is the pseudo-terminal path for pyserial.
- `MqttDevice(device_config, workdir=None)`: the same firmware on the MQTT transport, with real TCP
  sockets, against any broker.
- Both take `compiled=True` (deploy .mpy), `files={name: bytes}` (extra flash files, e.g. a CA),
  `heap=` (the board's RAM in bytes, 1 MiB by default: fixed, so `gc.mem_free()` and
  MemoryError are real) and `host=` (a `NodeHost`); both are context managers with `.start()`, `.stop()`,
  `.restart()` (soft reset, flash kept), `.console`, `.wait_console(text)`, `.state()`,
  `.boots`, `.config`, `.flash`, `.workdir` (a temporary one, removed by `.stop()`, when
  none is given). The serial board's pty also answers mpremote (raw REPL).
- `firmware.stage(flash, compiled=...)`, `host.run_script(flash, script)`: lower-level pieces.
"""

from faredge.virtual.board import MqttDevice, VirtualBoard, check_config
from faredge.virtual.firmware import FirmwareError
from faredge.virtual.host import HostUnavailable

__all__ = ["FirmwareError", "HostUnavailable", "MqttDevice", "VirtualBoard", "check_config"]
