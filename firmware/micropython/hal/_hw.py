"""Pieces shared by the real boards: a non-blocking UART, TCP/TLS sockets, Wi-Fi."""

import asyncio

import machine


def freq(hz=None):
    """machine.freq as a getter/setter that returns the frequency in Hz."""
    if hz is None:
        return machine.freq()
    machine.freq(hz)
    return hz


class Uart:
    """machine.UART (or pyb.USB_VCP) read without blocking: only what is already buffered."""

    def __init__(self, dev):
        self.dev = dev

    def read(self):
        n = self.dev.any()
        return self.dev.read(n) if n else None

    def write(self, data):
        self.dev.write(data)


def uart(cfg, **opts):
    """The config's UART; `opts` are the port's own keywords (pins, receive buffer size: a
    buffer that holds two full frames, so a busy loop iteration loses nothing)."""
    s = cfg["serial"]
    return Uart(machine.UART(s["uart"], baudrate=s["baud"], **opts))


class Conn:
    """A connected socket in non-blocking mode; read() returns b'' when nothing arrived."""

    def __init__(self, sock):
        self.sock = sock

    def read(self):
        try:
            data = self.sock.read(512)
        except OSError as e:
            if e.errno == 11:  # EAGAIN
                return b""
            raise
        if data is None:
            return b""
        if data == b"":
            raise OSError(104)  # ECONNRESET: peer closed
        return data

    def write(self, data):
        self.sock.setblocking(True)
        try:
            self.sock.write(data)
        finally:
            self.sock.setblocking(False)

    def close(self):
        self.sock.close()


async def tcp_open(host, port, tls=False, ca=None):
    import socket

    ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
    s = socket.socket(ai[0], socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(ai[-1])
    if tls:
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if ca:
            ctx.load_verify_locations(cafile=ca)
        s = ctx.wrap_socket(s, server_hostname=host)
    s.setblocking(False)
    return Conn(s)


async def net_up(cfg):
    """Station mode with the config's wifi.ssid/password; no-op when already connected."""
    import network

    w = cfg.get("wifi")
    if not w:
        return
    sta = network.WLAN(network.STA_IF)
    if sta.isconnected():
        return
    sta.active(True)
    sta.connect(w["ssid"], w.get("password", ""))
    for _ in range(200):
        if sta.isconnected():
            return
        await asyncio.sleep_ms(100)
    raise OSError(110)  # ETIMEDOUT
