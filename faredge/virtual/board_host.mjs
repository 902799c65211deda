// Host of the virtual board: runs our firmware in the real MicroPython (WebAssembly) under Node.
//
//   node board_host.mjs --root DIR (--main | --raw-repl | --exec FILE) [--uart-fd N] [--heap BYTES]
//                       [--no-raw-paste]
//
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
    heap: 1024 * 1024, uartFd: null, main: false, exec: null, root: null, repl: false, rawPaste: true,
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
    else throw new Error(`unknown argument ${k}`);
  }
  if (!a.root || [a.main, a.repl, a.exec !== null].filter(Boolean).length !== 1) {
    throw new Error("usage: --root DIR (--main | --raw-repl | --exec FILE) [--uart-fd N]");
  }
  return a;
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
  const nap = new Int32Array(new SharedArrayBuffer(4));
  const scan = interruptScanner();
  const uart = {
    writer: null,
    setRoute(fn) { route = fn; },
    write(buf) { if (uart.writer) uart.writer.write(buf); },
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

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const { loadMicroPython } = await import(interpreterPath());
  let sink = (b) => process.stdout.write(b);
  const out = (b) => sink(b);
  const mp = await loadMicroPython({ heapsize: args.heap, linebuffer: false, stdout: out, stderr: out });
  const FS = mp.FS;
  const system = new Set(FS.readdir("/").filter((n) => n !== "." && n !== ".."));
  loadTree(FS, args.root, "/", system);
  const sync = () => syncTree(FS, "/", args.root, system);
  let uart = null;
  const leave = (code) => {
    try { sync(); } finally {
      // Let what was written to the UART (a reboot banner, a last frame) reach the pty first.
      const w = uart?.writer;
      if (w) { w.write(Buffer.alloc(0), () => process.exit(code)); setTimeout(() => process.exit(code), 500); }
      else process.exit(code);
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
      rawPaste: args.rawPaste, sync, uart,
    });
    uart.setRoute(input);
    return;
  }
  const code = args.main ? "import main\n" : fs.readFileSync(args.exec, "utf8");
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
