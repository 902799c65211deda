// The board's REPL on its UART, close enough to a real board for mpremote (connect, exec,
// eval, fs cp/ls/cat/rm, soft-reset, reset).
//
// The WebAssembly interpreter has the REPL state machine but misses three board behaviours,
// which this module supplies: (1) Ctrl-D on an empty raw-REPL line only prints "OK" (a board
// soft-resets): we print the reboot banner and exit so the launcher restarts the interpreter on
// the same flash; (2) raw-paste (Ctrl-E A Ctrl-A) answers "R\x01" and then spins: we run the
// board's side of it here (window size, one Ctrl-A per window consumed, Ctrl-D to end, the
// whole program compiled at once) or, with `rawPaste: false`, answer "R\x00" (understood, not
// supported) like an old board, so clients fall back to the plain raw REPL; (3) file
// errors carry Emscripten errno values (ENOENT is 44): a shim re-raises them with MicroPython's
// numbers, which mpremote maps back to host errors (and adds file sizes to os.ilistdir).

export const EXIT_RESET = 3; // machine.reset() / Ctrl-D in the friendly REPL: boot the firmware
export const EXIT_RAW_REPL = 4; // mpremote interrupted the firmware: come back in the raw REPL
export const EXIT_RAW_RESET = 5; // Ctrl-D in the raw REPL: soft reboot, stay in the raw REPL

// Ctrl-C then Ctrl-A, as mpremote sends them to interrupt a program and enter the raw REPL.
// The firmware's UART carries COBS frames, so a lone Ctrl-C is data; this 4-byte sequence
// would need 0x0D 0x03 0x0D 0x01 inside one frame's CRC/seq/code bytes.
export const INTERRUPT = Buffer.from("\r\x03\r\x01");

const SHIM = (hidden) => `
import builtins, os
def _shim(hidden):
    m = {63: 1, 44: 2, 29: 5, 8: 9, 6: 11, 48: 12, 2: 13, 20: 17, 43: 19, 54: 20, 31: 21,
         28: 22, 51: 28, 69: 30, 37: 36, 55: 39}
    def wrap(f):
        def call(*a, **k):
            try:
                return f(*a, **k)
            except OSError as e:
                if e.errno in m:
                    raise OSError(m[e.errno]) from None
                raise
        return call
    def ilistdir(path="."):  # VfsPosix gives no sizes: add them, as mpremote fs ls shows them
        path = path or "."
        top = (path if path.startswith("/") else os.getcwd() + "/" + path).rstrip("/.") == ""
        out = []  # a list, not a generator: errors surface in the call, where they are mapped
        for e in os_ilistdir(path):
            if top and e[0] in hidden:
                continue  # the interpreter's own /dev, /proc, /tmp, /home are not the flash
            out.append(e if len(e) > 3 else (e[0], e[1], e[2], os_stat(path + "/" + e[0])[6]))
        return iter(out)
    def stat(path):  # a board's stat("") is its working directory, as mpremote's "cp x :" expects
        return os_stat(path or os.getcwd())
    os_ilistdir = os.ilistdir
    os_stat = os.stat
    os.ilistdir = ilistdir
    os.stat = stat
    builtins.open = wrap(builtins.open)
    for n in ("stat", "listdir", "ilistdir", "mkdir", "rmdir", "remove", "unlink", "rename",
              "chdir", "statvfs"):
        if hasattr(os, n):
            setattr(os, n, wrap(getattr(os, n)))
_shim(${JSON.stringify(hidden)})
del _shim
def _stdio():
    # sys.stdin.buffer / sys.stdout.buffer and select.poll on them, for programs that talk to
    # the host over the REPL line themselves (mpremote mount); everything else is the real one.
    import sys, select, _vuart
    real_sys, real_select = sys, select
    class In:
        def readinto(self, buf, n=None):
            n = len(buf) if n is None else n
            d = bytes(_vuart.read(n, -1) or b"")
            buf[: len(d)] = d
            return len(d)
        def read(self, n=-1):
            return bytes(_vuart.read(n if n > 0 else 4096, -1) or b"")
    class Out:
        def write(self, b, n=None):
            b = bytes(b if n is None else memoryview(b)[:n])
            _vuart.write(b.hex())
            return len(b)
    class Std:
        def __init__(self, real, buffer):
            self.real, self.buffer = real, buffer
        def __getattr__(self, k):
            return getattr(self.real, k)
    stdin_buf = In()
    class Sys:
        stdin = Std(real_sys.stdin, stdin_buf)
        stdout = Std(real_sys.stdout, Out())
        def __getattr__(self, k):
            return getattr(real_sys, k)
    class Poll:
        def __init__(self):
            self.p, self.o = real_select.poll(), None
        def register(self, o, mask=real_select.POLLIN):
            if o is stdin_buf or o is Sys.stdin:
                self.o = o
            else:
                self.p.register(o, mask)
        def poll(self, timeout=-1):
            if self.o is None:
                return self.p.poll(timeout)
            return [(self.o, real_select.POLLIN)] if _vuart.ready(timeout) else []
        def ipoll(self, timeout=-1, flags=0):
            return iter(self.poll(timeout))
    class Select:
        poll = Poll
        def __getattr__(self, k):
            return getattr(real_select, k)
    sys.modules["sys"] = Sys()
    sys.modules["select"] = Select()
_stdio()
del _stdio
`;

/** Finds INTERRUPT in a byte stream delivered in arbitrary chunks. */
export function interruptScanner() {
  let tail = Buffer.alloc(0);
  return (chunk) => {
    const data = Buffer.concat([tail, chunk]);
    const hit = data.indexOf(INTERRUPT) >= 0;
    tail = data.subarray(Math.max(0, data.length - (INTERRUPT.length - 1)));
    return hit;
  };
}

export const PASTE_WINDOW = 256; // bytes per flow-control window (a board uses its RX buffer size)

/**
 * Run the REPL: `write(bytes)` sends to the UART, `leave(code)` ends this interpreter, `hidden`
 * lists the interpreter's own top-level directories (not part of the board's flash), `sync()`
 * writes the flash back after every program (what a program wrote survives a power loss, as
 * on a board's flash), `rawPaste: false` refuses raw-paste mode, `maxSource` is the longest
 * pasted program (in bytes) the host can hand to the compiler.
 * Returns `input(chunk)` for the UART bytes.
 */
export async function startRepl(mp, {
  raw, setSink, write, leave, hidden, rawPaste = true, sync = () => {}, uart = null, maxSource = Infinity,
}) {
  mp.registerJsModule("_vuart", {
    read: (n, timeoutMs) => (uart ? uart.readSync(n, timeoutMs) : null),
    ready(timeoutMs) {
      if (!uart) return false;
      const d = uart.readSync(0, timeoutMs); // waits for data without taking it
      return d !== null;
    },
    write: (hex) => uart && uart.writeSync(hex),
  });
  mp.runPython(SHIM(hidden));
  mp.registerJsModule("machine", { reset: () => leave(EXIT_RESET), soft_reset: () => leave(EXIT_RESET) });
  setSink(raw ? () => {} : write); // a board entering the raw REPL directly shows no banner
  mp.replInit();
  setSink(write);
  let mode = "friendly";
  let pending = 0; // bytes in the current raw-REPL command
  let paste = 0; // progress through Ctrl-E 'A' Ctrl-A
  let pasted = null; // bytes of the program being received in raw-paste mode
  let window = 0; // bytes left in the current flow-control window
  const feed = (c) => mp.replProcessCharWithAsyncify(c);

  // Raw-paste as pyexec.c does it: Ctrl-D (or Ctrl-C) ends the program, acknowledged with
  // Ctrl-D; then its output, Ctrl-D, the traceback if any, Ctrl-D and the raw-REPL prompt.
  function pasteByte(c) {
    if (c !== 0x04 && c !== 0x03) {
      pasted.push(c);
      if (--window === 0) { window = PASTE_WINDOW; write(Buffer.from([0x01])); }
      return;
    }
    const code = Buffer.from(pasted).toString("utf8");
    pasted = null;
    write(Buffer.from([0x04]));
    let err = "";
    if (c === 0x04 && Buffer.byteLength(code) >= maxSource) {
      // The source would not fit the C heap left beside the board's RAM (see board_host.mjs):
      // what a board compiling it in its heap runs into too.
      err = "Traceback (most recent call last):\nMemoryError: program too large for the heap\n";
    } else if (c === 0x04) {
      try { mp.runPython(code); } catch (e) {
        if (e.name !== "PythonError") throw e;
        err = e.message;
      }
    } else {
      err = "Traceback (most recent call last):\nKeyboardInterrupt: \n";
    }
    sync();
    if (uart) uart.drainSync();
    write(Buffer.from(`\x04${err.replace(/\r?\n/g, "\r\n")}\x04>`));
  }

  async function handle(c) {
    if (pasted !== null) return pasteByte(c);
    if (mode === "friendly") {
      if (c === 0x04) {
        write(Buffer.from("MPY: soft reboot\r\n"));
        return leave(EXIT_RESET);
      }
      if (c === 0x01) { mode = "raw"; pending = 0; }
      return feed(c);
    }
    if (paste === 0 && pending === 0 && c === 0x05) { paste = 1; return; }
    if (paste === 1) {
      paste = c === 0x41 ? 2 : 0;
      if (paste) return;
      await feed(0x05);
    } else if (paste === 2) {
      paste = 0;
      if (c === 0x01 && !rawPaste) { write(Buffer.from("R\x00")); return; }
      if (c === 0x01) {
        pasted = [];
        window = PASTE_WINDOW;
        write(Buffer.from([0x52, 0x01, PASTE_WINDOW & 0xff, PASTE_WINDOW >> 8]));
        return;
      }
      await feed(0x05);
      await feed(0x41);
    }
    if (c === 0x04) {
      if (pending === 0) {
        write(Buffer.from("OK\r\nMPY: soft reboot\r\n"));
        return leave(EXIT_RAW_RESET);
      }
      pending = 0;
      await feed(c);
      return sync();
    }
    if (c === 0x02) mode = "friendly";
    pending = c === 0x01 || c === 0x02 || c === 0x03 ? 0 : pending + 1;
    return feed(c);
  }

  let chain = Promise.resolve();
  if (raw) { mode = "raw"; chain = chain.then(() => feed(0x01)); }
  // One step of the chain per chunk, not per byte: a raw-paste program's bytes are taken in a
  // loop (the paste state is plain data); only what the interpreter itself reads waits for it.
  async function handleChunk(chunk) {
    for (const c of chunk) {
      if (pasted !== null) pasteByte(c);
      else await handle(c);
    }
  }
  return (chunk) => {
    chain = chain.then(() => handleChunk(chunk));
  };
}
