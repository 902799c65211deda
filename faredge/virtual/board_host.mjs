// Host of the virtual board: runs our firmware in the real MicroPython (WebAssembly) under Node.
//
//   node board_host.mjs --root DIR (--main | --raw-repl | --exec FILE | --standby) [--uart-fd N]
//     [--ready-fd N] (a standby writes one byte there, and closes it, once it has loaded)
//                       [--heap BYTES] [--no-raw-paste]
//
// --standby: load the interpreter, then wait for the mode (a line "--main" or "--raw-repl" on
// stdin) before touching the flash or the UART. The launcher keeps one such process ready, so
// a reset costs what a board's reset costs (the flash loaded, the firmware imported), not
// Node's and the interpreter's start.
//
// BYTES is the board's RAM, the GC heap: fixed, as on a board (see boundHeap). Without --heap
// the interpreter's own behaviour stays: 1 MiB to start with, grown on demand (host scripts such
// as the firmware's unit tests, which churn more garbage in one call than a board's heap holds).
// DIR is the board's flash: loaded into the interpreter's in-memory filesystem at start and
// written back on every `_vboard.sync()` (the firmware persists its state), on reset and on
// SIGTERM. The firmware reaches the host through the `_vboard` JS module: UART bytes (fd N, a
// pseudo-terminal master opened by the Python launcher), TCP/TLS sockets through Node's `net`
// and `tls`, reset (exit code 3: the launcher restarts us, like a soft reboot keeps the flash).
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import tls from "node:tls";
import ttyMod from "node:tty";
import { createRequire } from "node:module";

import { EXIT_RAW_REPL, EXIT_RESET, interruptScanner, startRepl } from "./raw_repl.mjs";

const require = createRequire(import.meta.url);
const SYNC_SUFFIX = ".vboard-sync~"; // a file being replaced on the host side

function parseArgs(argv) {
  const a = {
    heap: null, uartFd: null, main: false, exec: null, root: null, repl: false, rawPaste: true,
    standby: false, readyFd: null,
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    if (k === "--root") a.root = argv[++i];
    else if (k === "--exec") a.exec = argv[++i];
    else if (k === "--uart-fd") a.uartFd = Number(argv[++i]);
    else if (k === "--heap") a.heap = Number(argv[++i]);
    else if (k === "--main") a.main = true;
    else if (k === "--raw-repl") a.repl = true;
    else if (k === "--no-raw-paste") a.rawPaste = false;
    else if (k === "--standby") a.standby = true;
    else if (k === "--ready-fd") a.readyFd = Number(argv[++i]);
    else throw new Error(`unknown argument ${k}`);
  }
  if (!a.root || [a.main, a.repl, a.exec !== null, a.standby].filter(Boolean).length !== 1) {
    throw new Error("usage: --root DIR (--main | --raw-repl | --exec FILE | --standby) [--uart-fd N]");
  }
  return a;
}

// The mode a standby process is started in: one line on stdin; EOF (the launcher stopped) ends it.
function awaitMode(a) {
  if (a.readyFd !== null) {
    // Nobody may be listening any more (told its mode before it had loaded): not an error.
    try { fs.writeSync(a.readyFd, "R"); } catch (e) { if (e.code !== "EPIPE") throw e; }
    fs.closeSync(a.readyFd);
  }
  const buf = Buffer.alloc(64);
  let line = "";
  while (!line.includes("\n")) {
    let n = 0;
    try { n = fs.readSync(0, buf, 0, buf.length, null); } catch (e) {
      if (e.code !== "EAGAIN") throw e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
      continue;
    }
    if (n === 0) process.exit(0);
    line += buf.toString("utf8", 0, n);
  }
  const mode = line.trim();
  if (mode === "--main") a.main = true;
  else if (mode === "--raw-repl") a.repl = true;
  else throw new Error(`standby: unknown mode ${mode}`);
}

function interpreterPath() {
  // Resolved from this file upwards (the repository's node_modules), or MLSYSOPS_MICROPYTHON.
  if (process.env.MLSYSOPS_MICROPYTHON) return process.env.MLSYSOPS_MICROPYTHON;
  return require.resolve("@micropython/micropython-webassembly-pyscript/micropython.mjs", {
    paths: [process.cwd(), path.dirname(new URL(import.meta.url).pathname)],
  });
}

// --- the flash: host directory <-> in-memory filesystem -----------------------------------
function loadTree(FS, hostDir, devDir, system) {
  for (const name of fs.readdirSync(hostDir)) {
    if (devDir === "/" && system.has(name)) continue;
    const src = path.join(hostDir, name);
    const dst = devDir === "/" ? `/${name}` : `${devDir}/${name}`;
    if (fs.statSync(src).isDirectory()) {
      try { FS.mkdir(dst); } catch { /* exists */ }
      loadTree(FS, src, dst, system);
    } else {
      FS.writeFile(dst, fs.readFileSync(src));
    }
  }
}

// Mirrors the in-memory tree onto the host directory: changed files replaced atomically, and
// what the board deleted deleted, so a removal survives a reset as it does on a real flash.
function syncTree(FS, devDir, hostDir, system) {
  const present = new Set();
  for (const name of FS.readdir(devDir)) {
    if (name === "." || name === ".." || (devDir === "/" && system.has(name))) continue;
    present.add(name);
    const src = devDir === "/" ? `/${name}` : `${devDir}/${name}`;
    const dst = path.join(hostDir, name);
    if (FS.isDir(FS.stat(src).mode)) {
      if (fs.existsSync(dst) && !fs.statSync(dst).isDirectory()) fs.rmSync(dst);
      fs.mkdirSync(dst, { recursive: true });
      syncTree(FS, src, dst, system);
    } else {
      const data = FS.readFile(src);
      let old = null;
      try { old = fs.readFileSync(dst); } catch { /* new file, or a directory before */ }
      if (old === null || !old.equals(Buffer.from(data))) {
        fs.rmSync(dst, { recursive: true, force: true });
        fs.writeFileSync(dst + SYNC_SUFFIX, data);
        fs.renameSync(dst + SYNC_SUFFIX, dst);
      }
    }
  }
  for (const name of fs.readdirSync(hostDir)) {
    if (!present.has(name) && !(devDir === "/" && system.has(name))) {
      fs.rmSync(path.join(hostDir, name), { recursive: true, force: true });
    }
  }
}

// --- sockets for the firmware's MQTT client (TLS verified against a CA file on the flash) ---
function makeTcp(FS) {
  const conns = new Map();
  let next = 1;
  return {
    tcp_open(host, port, useTls, ca) {
      const id = next++;
      const c = { state: 0, rx: [], sock: null };
      const opts = { host, port };
      if (useTls) {
        if (ca) opts.ca = Buffer.from(FS.readFile(ca)); // a path on the board's flash
        if (net.isIP(host) === 0) opts.servername = host; // SNI takes names, not addresses
        c.sock = tls.connect(opts, () => { c.state = 1; });
      } else {
        c.sock = net.connect(opts, () => { c.state = 1; });
      }
      c.sock.setNoDelay(true);
      c.sock.on("data", (d) => c.rx.push(d));
      c.sock.on("error", () => { c.state = -1; });
      c.sock.on("close", () => { c.state = -1; });
      conns.set(id, c);
      return id;
    },
    tcp_state: (id) => conns.get(id)?.state ?? -1,
    tcp_read(id) {
      const c = conns.get(id);
      if (!c) return null;
      if (c.rx.length) { const d = Buffer.concat(c.rx); c.rx = []; return new Uint8Array(d); }
      return c.state < 0 ? null : new Uint8Array(0);
    },
    tcp_write(id, hex) {
      const c = conns.get(id);
      if (!c || c.state < 0) return false;
      c.sock.write(Buffer.from(hex, "hex"));
      return true;
    },
    tcp_close(id) {
      const c = conns.get(id);
      if (c) { c.sock.destroy(); conns.delete(id); }
    },
  };
}

// --- the UART: a pseudo-terminal master handed over by the launcher -----------------------
// Bytes go to the firmware (`uart_read`) or, in REPL mode, to the REPL (`route`). While the
// firmware runs, mpremote's interrupt sequence ends this interpreter (exit 4) and the launcher
// starts the next one in the raw REPL, as a board drops into the REPL on Ctrl-C.
// A program running in the REPL may read the UART itself (sys.stdin.buffer, select.poll: what
// mpremote's `mount` does): it runs synchronously, so those reads and writes go to the fd
// directly (`readSync`/`writeSync`), and what such a read took beyond the program's share
// goes back to the REPL afterwards (`drainSync`).
function makeUart(fd, onInterrupt) {
  let rx = [];
  let route = null;
  let syncRx = Buffer.alloc(0);
  let out = [];
  let outBytes = 0;
  let flushing = false;
  const nap = new Int32Array(new SharedArrayBuffer(4));
  const scan = interruptScanner();
  const uart = {
    writer: null,
    setRoute(fn) { route = fn; },
    // What the interpreter prints comes a byte at a time; it leaves in one write per turn of the
    // event loop (or per 4 KiB), in order, as a UART's FIFO drains, not one syscall per byte.
    write(buf) {
      if (!uart.writer) return;
      out.push(buf);
      outBytes += buf.length;
      if (outBytes >= 4096) uart.flush();
      else if (!flushing) { flushing = true; setImmediate(uart.flush); }
    },
    flush() {
      flushing = false;
      if (!out.length) return;
      const data = out.length === 1 ? out[0] : Buffer.concat(out);
      out = [];
      outBytes = 0;
      uart.writer.write(data);
    },
    uart_read() {
      if (!rx.length) return null;
      const d = Buffer.concat(rx);
      rx = [];
      return new Uint8Array(d);
    },
    uart_write(hex) { uart.write(Buffer.from(hex, "hex")); },
    readSync(n, timeoutMs) {
      const deadline = timeoutMs < 0 ? Infinity : Date.now() + timeoutMs;
      const chunk = Buffer.alloc(4096);
      while (!syncRx.length && fd !== null) {
        try {
          const k = fs.readSync(fd, chunk, 0, chunk.length, null);
          if (k > 0) syncRx = Buffer.from(chunk.subarray(0, k));
        } catch (e) {
          if (e.code !== "EAGAIN") return null;
        }
        if (!syncRx.length) {
          if (Date.now() >= deadline) return null;
          Atomics.wait(nap, 0, 0, 1);
        }
      }
      const take = syncRx.subarray(0, Math.max(0, n));
      syncRx = syncRx.subarray(take.length);
      return new Uint8Array(take);
    },
    writeSync(hex) {
      uart.flush(); // what was printed before goes first
      let buf = Buffer.from(hex, "hex");
      while (buf.length && fd !== null) {
        try { buf = buf.subarray(fs.writeSync(fd, buf)); } catch (e) {
          if (e.code !== "EAGAIN") return;
          Atomics.wait(nap, 0, 0, 1);
        }
      }
    },
    drainSync() {
      if (syncRx.length && route) { const d = syncRx; syncRx = Buffer.alloc(0); route(d); }
    },
  };
  if (fd !== null) {
    // A pty master is a TTY to libuv: a tty stream (non-blocking, event driven) in both ways.
    const input = new ttyMod.ReadStream(fd);
    input.on("data", (d) => {
      if (route) route(d);
      else if (scan(d)) onInterrupt();
      else rx.push(d);
    });
    input.on("error", () => {});
    uart.writer = new ttyMod.WriteStream(fd);
    uart.writer.on("error", () => {});
  }
  return uart;
}

// --- the RAM: a heap of the configured size, as on a board ----------------------------------
// This interpreter is built to grow its GC heap on demand (another area malloc'ed whenever an
// allocation does not fit, up to 128 MiB more, and gc.mem_free() counts those 128 MiB as free).
// A board has the heap it has: here the linear memory may no longer grow once the interpreter
// is up, and what the C heap has left beyond RESERVE is taken, so a new GC area (at least as
// large as the heap itself) cannot be had: the allocation fails, the program gets MemoryError.
// RESERVE is what the host side still mallocs (a program's source on its way to the compiler).
// One difference remains: this build collects garbage only between calls from the host (a REPL
// program, a task step), not inside one, so a single program that churns more garbage than the
// heap holds gets MemoryError where a board would collect.
const MAX_NEW_SPLIT = 128 * 1024 * 1024; // gc_get_max_new_split() of the WebAssembly port
const GROWING_HEAP_START = 1024 * 1024;
const HOST_NOTICES = /^(growMemory: |Failed to grow the heap|Cannot enlarge memory)/;

function quietGrowthNotices() {
  // Emscripten reports each refused growth on stderr (the board's console); the program sees
  // the MemoryError, the console need not see the emulator's reasons. Installed before the
  // interpreter loads: it binds console.error then.
  const error = console.error;
  console.error = (...a) => { if (!(typeof a[0] === "string" && HOST_NOTICES.test(a[0]))) error(...a); };
}

function reserveFor(heap) {
  return Math.min(256 * 1024, Math.floor(heap / 2));
}

function boundHeap(mp, reserve) {
  const M = mp._module;
  WebAssembly.Memory.prototype.grow = () => { throw new RangeError("a board's RAM does not grow"); };
  const keep = M._malloc(reserve);
  for (let size = 1 << 26; size >= 16;) {
    if (!M._malloc(size)) size >>= 1; // taken for good: the board has no more RAM
  }
  M._free(keep);
  // gc.mem_free() without the 128 MiB this interpreter can no longer add.
  mp.runPython(`
def _vgc(split):
    import gc, sys
    real = gc
    class GC:
        def mem_free(self):
            f = real.mem_free()
            return f - split if f >= split else f
        def __getattr__(self, k):
            return getattr(real, k)
    sys.modules["gc"] = GC()
_vgc(${MAX_NEW_SPLIT})
del _vgc
`);
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const { loadMicroPython } = await import(interpreterPath());
  let sink = (b) => process.stdout.write(b);
  const out = (b) => sink(b);
  quietGrowthNotices();
  const heapsize = args.heap ?? GROWING_HEAP_START;
  const mp = await loadMicroPython({ heapsize, linebuffer: false, stdout: out, stderr: out });
  // A script run with --exec is handed to the compiler whole: its source must fit the reserve.
  const script = args.exec === null ? null : fs.readFileSync(args.exec, "utf8");
  let maxSource = Infinity;
  if (args.heap !== null) {
    const reserve = Math.max(reserveFor(args.heap), script === null ? 0 : Buffer.byteLength(script) + 4096);
    boundHeap(mp, reserve);
    maxSource = reserve / 2; // the rest: what runs beside the program
  }
  if (args.standby) awaitMode(args); // ready: the flash and the UART wait for the go
  const FS = mp.FS;
  const system = new Set(FS.readdir("/").filter((n) => n !== "." && n !== ".."));
  loadTree(FS, args.root, "/", system);
  const sync = () => syncTree(FS, "/", args.root, system);
  let uart = null;
  const leave = (code) => {
    try { sync(); } finally {
      // Let what was written to the UART (a reboot banner, a last frame) reach the pty first.
      const w = uart?.writer;
      if (w) {
        uart.flush();
        w.write(Buffer.alloc(0), () => process.exit(code));
        setTimeout(() => process.exit(code), 500);
      } else process.exit(code);
    }
  };
  uart = makeUart(args.uartFd, () => leave(EXIT_RAW_REPL));
  process.on("SIGTERM", () => leave(0));
  process.on("SIGINT", () => leave(0));
  mp.registerJsModule("_vboard", {
    uart_read: uart.uart_read,
    uart_write: uart.uart_write,
    ...makeTcp(FS),
    sync,
    reset: () => leave(EXIT_RESET),
    exit: (code) => leave(code),
  });
  if (args.repl) {
    const input = await startRepl(mp, {
      raw: true, setSink: (fn) => { sink = fn; }, write: uart.write, leave, hidden: [...system],
      rawPaste: args.rawPaste, sync, uart, maxSource,
    });
    uart.setRoute(input);
    return;
  }
  const code = args.main ? "import main\n" : script;
  try {
    mp.runPython(code);
  } catch (e) {
    if (e.name !== "PythonError") throw e;
    process.stdout.write(e.message);
    leave(1);
  }
}

main().catch((e) => {
  process.stderr.write(`board_host: ${e.message}\n`);
  process.exit(2);
});
