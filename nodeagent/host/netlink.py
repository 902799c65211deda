"""Netlink adapter: namespaces, interfaces, qdiscs and classes, kernel feature probing.

It speaks kernel units (bytes/s, psched ticks) and leaves every decision (what to write,
canonical spellings, ownership) to the network mechanism; it implements that mechanism's port
(NetPort, over the plain values of netvalues.py) and turns kernel refusals and OSError into
HostError. The messages are packed and decoded by tcwire.py with `struct`, on plain
NETLINK_ROUTE sockets. pyroute2 did this before: its codec spent 0.5 ms of CPU computing unsent
rate tables per HTB class and about a millisecond decoding each dump (most of a profile apply's
network time). It is still what probes kernel features, once, with the first network request,
in a child interpreter (probe_in_child): it never enters the daemon's memory.

Namespaces: a named namespace is a file in `netns_dir` (as `ip netns add` creates it). Sockets
are opened inside it by a short-lived thread that setns()es and exits (about a millisecond),
which never moves the agent's own threads. One socket per namespace is cached and checked
against the namespace file's inode on each use, so a namespace deleted and re-created under the
same name is not served by a socket into the dead one. Feature probing runs in an anonymous
namespace that lives only as long as its socket: nothing is mounted, nothing can be left
behind, the host's interfaces are untouched.

Threads: every request runs on one worker thread owned by the adapter (see _on_worker), so
callers may be threads or coroutines, and requests (and their sequence numbers) are serialised.

Privileges: CAP_NET_ADMIN for tc changes; CAP_SYS_ADMIN for setns() into named namespaces and
for the probe namespace (without it, features are reported as not probed); AF_NETLINK.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import functools
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from nodeagent.errors import HostError
from nodeagent.host import tcwire
from nodeagent.host.lazyimport import without_package_init
from nodeagent.host.lazynetlink import list_namespaces
from nodeagent.host.netvalues import Feature, HtbClassParams, Link, Qdisc, RootState, TbfParams
from nodeagent.host.tcwire import TC_H_ROOT, NetlinkRefusal

CLONE_NEWNET = 0x40000000
NETLINK_ROUTE = 0

P = ParamSpec("P")
R = TypeVar("R")


def _netns_socket(path: str | None) -> socket.socket:
    """A NETLINK_ROUTE socket inside the namespace at `path`, or in a new anonymous one (None).

    A socket stays bound to the namespace it was created in, so a throwaway thread enters the
    namespace, creates the socket and exits; the agent's other threads never change namespace.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    box: dict[str, Any] = {}

    def enter_and_open() -> None:
        try:
            if path is None:
                if libc.unshare(CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) failed")
            else:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    if libc.setns(fd, CLONE_NEWNET) != 0:
                        err = ctypes.get_errno()
                        raise OSError(err, f"setns: {os.strerror(err)}")
                finally:
                    os.close(fd)
            box["sock"] = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)
        except OSError as exc:
            box["error"] = exc

    thread = threading.Thread(target=enter_and_open, name="netns-open", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["sock"]


def _rtnl_socket(path: str | None) -> socket.socket:
    """A NETLINK_ROUTE socket in the namespace at `path`, or the agent's own; extended acks on
    (the kernel says why it refuses), capped (our request is not echoed back)."""
    own = functools.partial(socket.socket, socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)
    sock = _netns_socket(path) if path else own()
    try:
        sock.setsockopt(tcwire.SOL_NETLINK, tcwire.NETLINK_EXT_ACK, 1)
        sock.setsockopt(tcwire.SOL_NETLINK, tcwire.NETLINK_CAP_ACK, 1)
        sock.bind((0, 0))
    except OSError:
        sock.close()
        raise
    return sock


def _acknowledged(sock: socket.socket, data: bytes, seq: int) -> None:
    """Send one request and wait for its acknowledgement; NetlinkRefusal when refused."""
    sock.send(data)
    while (answer := tcwire.acknowledgement(sock.recv(65536), seq)) is None:
        pass  # not ours (nothing else is sent on this socket): keep reading
    code, message = answer
    if code:
        raise NetlinkRefusal(code, message)


def _dumped(sock: socket.socket, data: bytes, seq: int, parse: Callable[[bytes, int], Any]) -> list[Any]:
    """Send a dump request, gather what `parse` finds in each datagram until the dump ends."""
    sock.send(data)
    found: list[Any] = []
    while True:
        items, done, error = parse(sock.recv(1 << 16), seq)
        found += items
        if error:
            raise NetlinkRefusal(error)
        if done:
            return found


def _describe(exc: NetlinkRefusal) -> str:
    return f"{exc.message or os.strerror(exc.code)} (errno {exc.code})"


def _on_worker(method: Callable[Concatenate[NetlinkHost, P], R]) -> Callable[Concatenate[NetlinkHost, P], R]:
    """Run the method on the adapter's own thread.

    Callers may be threads or coroutines (a grpc.aio servicer); the sockets, the interface
    indexes and the sequence numbers are used from one thread, and requests are serialised
    (they take well under a millisecond each).
    """

    def call(self: NetlinkHost, /, *args: P.args, **kwargs: P.kwargs) -> R:
        if threading.get_ident() == self._worker_ident:
            return method(self, *args, **kwargs)
        try:
            future = self._worker.submit(method, self, *args, **kwargs)
        except RuntimeError as exc:  # submitted after close()
            raise HostError("netlink", "the netlink adapter is closed") from exc
        return future.result()

    functools.update_wrapper(call, method)  # as @functools.wraps, keeping call's precise type
    return call


class NetlinkHost:
    """NetPort over netlink sockets, safe to call from any thread or coroutine."""

    def __init__(self, netns_dir: str = "/run/netns") -> None:
        self.netns_dir = netns_dir
        self._conns: dict[str, tuple[tuple[int, int], socket.socket]] = {}
        self._seq = 0  # of the last request sent
        self._indexes: dict[tuple[str, str], int] = {}  # (netns, ifname) -> ifindex, as roots() saw it
        self._worker_ident = 0
        self._worker = ThreadPoolExecutor(1, "netlink", initializer=self._remember_worker)

    def _remember_worker(self) -> None:
        self._worker_ident = threading.get_ident()

    # ------------------------------------------------------------ connections

    def _ns_path(self, netns: str) -> str:
        if not netns or "/" in netns or netns in (".", ".."):
            raise HostError(f"netns:{netns}", "not a namespace name", errno.EINVAL)
        return os.path.join(self.netns_dir, netns)

    def _sock(self, netns: str) -> socket.socket:
        """The cached socket into `netns`, re-opened if the namespace file changed identity."""
        if netns:
            path = self._ns_path(netns)
            try:
                st = os.stat(path)
            except OSError as exc:
                self._forget(netns)
                raise HostError(f"netns:{netns}", "no such network namespace", exc.errno) from exc
            ident = (st.st_dev, st.st_ino)
        else:
            path, ident = "", (0, 0)
        cached = self._conns.get(netns)
        if cached is not None and cached[0] == ident:
            return cached[1]
        self._forget(netns)
        try:
            sock = _rtnl_socket(path or None)
        except OSError as exc:
            raise HostError(f"netns:{netns or '-'}", f"cannot open netlink: {exc}", exc.errno) from exc
        self._conns[netns] = (ident, sock)
        return sock

    def _forget(self, netns: str) -> None:
        for known in [k for k in self._indexes if k[0] == netns]:
            del self._indexes[known]
        cached = self._conns.pop(netns, None)
        if cached is not None:
            cached[1].close()

    def close(self) -> None:
        """Close every socket; later calls raise HostError."""
        with contextlib.suppress(HostError):
            self._close_sockets()
        self._worker.shutdown(wait=True)

    @_on_worker
    def _close_sockets(self) -> None:
        for netns in list(self._conns):
            self._forget(netns)

    @contextlib.contextmanager
    def _session(self, netns: str, what: str) -> Iterator[socket.socket]:
        """Netlink calls on `netns`, with errors translated into HostError."""
        key = f"{netns or '-'}/{what}"
        sock = self._sock(netns)
        try:
            yield sock
        except NetlinkRefusal as exc:
            raise HostError(key, _describe(exc), exc.code) from exc
        except OSError as exc:
            self._forget(netns)
            raise HostError(key, f"netlink socket failed: {exc}", exc.errno) from exc

    def _next_seq(self) -> int:
        self._seq = self._seq % 0x7FFFFFFF + 1
        return self._seq

    def _index(self, sock: socket.socket, netns: str, ifname: str) -> int:
        """The interface's index as roots() last saw it (the network mechanism reads the roots
        right before it writes them), else looked up: one RTM_GETLINK fewer per tc write."""
        index = self._indexes.get((netns, ifname))
        if index is None:
            found = _link_info(sock, ifname, self._next_seq())
            if found is None:
                raise HostError(f"{netns or '-'}/{ifname}", "no such interface", errno.ENODEV)
            index = self._indexes[(netns, ifname)] = found.index
        return index

    def _tc_request(self, sock: socket.socket, netns: str, ifname: str, request: tcwire.TcRequest) -> None:
        """`request` for `ifname`; when the kernel no longer knows a remembered index (the
        interface was re-created since), looked up again once."""
        remembered = (netns, ifname) in self._indexes
        try:
            seq = self._next_seq()
            _acknowledged(sock, request.encode(self._index(sock, netns, ifname), seq), seq)
        except NetlinkRefusal as exc:
            if not remembered or exc.code != errno.ENODEV:
                raise
            self._indexes.pop((netns, ifname), None)
            seq = self._next_seq()
            _acknowledged(sock, request.encode(self._index(sock, netns, ifname), seq), seq)

    def _htb_classes(self, sock: socket.socket, index: int, major: int) -> tuple[HtbClassParams, ...]:
        """The HTB classes below `major` of interface `index` (the kernel dumps only its own)."""
        seq = self._next_seq()
        request = tcwire.class_dump(index, seq)
        dumped: list[tcwire.DumpedClass] = _dumped(sock, request, seq, tcwire.dumped_classes)
        found = [c.htb for c in dumped if c.index == index and c.handle >> 16 == major and c.htb]
        return tuple(sorted(found, key=lambda c: c.minor))

    # ------------------------------------------------------------ reading

    def namespaces(self) -> list[str]:
        return list_namespaces(self.netns_dir)

    @_on_worker
    def links(self, netns: str) -> list[Link]:
        with self._session(netns, "links") as sock:
            seq = self._next_seq()
            infos: list[tcwire.LinkInfo] = _dumped(sock, tcwire.link_dump(seq), seq, tcwire.dumped_links)
            return sorted((_link(info, netns) for info in infos), key=lambda link: link.index)

    @_on_worker
    def roots(self, netns: str, ifnames: Sequence[str], htb_major: int | None) -> dict[str, RootState]:
        with self._session(netns, "roots") as sock:
            links: dict[int, Link] = {}
            for name in dict.fromkeys(ifnames):
                info = _link_info(sock, name, self._next_seq())
                self._indexes.pop((netns, name), None)
                if info is not None:
                    links[info.index] = _link(info, netns)
                    self._indexes[(netns, name)] = info.index
            if not links:
                return {}
            seq = self._next_seq()
            request = tcwire.qdisc_dump(seq)
            dumped: list[tcwire.DumpedQdisc] = _dumped(sock, request, seq, tcwire.dumped_qdiscs)
            qdiscs = {
                q.index: Qdisc(q.kind, q.handle, q.params)
                for q in dumped
                if q.index in links and q.parent == TC_H_ROOT
            }
            out: dict[str, RootState] = {}
            for index, link in links.items():
                qdisc = qdiscs.get(index)
                ours = qdisc is not None and qdisc.kind == "htb" and qdisc.handle >> 16 == htb_major
                classes = self._htb_classes(sock, index, qdisc.handle >> 16) if ours and qdisc else ()
                out[link.name] = RootState(link, qdisc, classes)
            return out

    # ------------------------------------------------------------ writing

    @_on_worker
    def replace_htb_root(self, netns: str, ifname: str, major: int, default_minor: int) -> None:
        with self._session(netns, f"{ifname}/root") as sock:
            self._tc_request(sock, netns, ifname, tcwire.htb_root(major, default_minor))

    @_on_worker
    def replace_htb_class(self, netns: str, ifname: str, major: int, params: HtbClassParams) -> None:
        with self._session(netns, f"{ifname}/class {major:x}:{params.minor:x}") as sock:
            self._tc_request(sock, netns, ifname, tcwire.htb_class(major, params))

    @_on_worker
    def delete_htb_class(self, netns: str, ifname: str, major: int, minor: int) -> None:
        with self._session(netns, f"{ifname}/class {major:x}:{minor:x}") as sock:
            try:
                self._tc_request(sock, netns, ifname, tcwire.delete_class(major, minor))
            except NetlinkRefusal as exc:
                if exc.code != errno.ENOENT:
                    raise

    @_on_worker
    def replace_tbf_root(self, netns: str, ifname: str, major: int, params: TbfParams) -> None:
        with self._session(netns, f"{ifname}/root") as sock:
            self._tc_request(sock, netns, ifname, tcwire.tbf_root(major, params))

    @_on_worker
    def delete_root(self, netns: str, ifname: str, handle: int) -> None:
        with self._session(netns, f"{ifname}/root") as sock:
            self._tc_request(sock, netns, ifname, tcwire.delete_root(handle))

    # ------------------------------------------------------------ probing

    @_on_worker
    def probe_features(self, qdisc_kinds: Sequence[str], link_kinds: Sequence[str]) -> list[Feature]:
        """Try each kind in a fresh anonymous namespace, in a child interpreter (probe_in_child)."""
        return probe_in_child(qdisc_kinds, link_kinds)


#: The probe child's whole run (an interpreter start, pyroute2's import, a few requests).
PROBE_TIMEOUT_S = 60.0


def probe_in_child(qdisc_kinds: Sequence[str], link_kinds: Sequence[str]) -> list[Feature]:
    """The kernel features, probed by a child interpreter that runs probe_main().

    The probe is the agent's one use of pyroute2 and runs once, with the first network request:
    in a child, pyroute2 (4.3 MiB of RSS even without its package __init__) never enters the
    daemon, and the child's memory is the kernel's again when it exits. A child that cannot run
    or fails reports every feature as not probed, with the reason."""
    names = [f"qdisc/{k}" for k in qdisc_kinds] + [f"link/{k}" for k in link_kinds]
    package_root = str(Path(__file__).resolve().parents[2])  # where `nodeagent` is importable from
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)
    request = json.dumps({"qdiscs": list(qdisc_kinds), "links": list(link_kinds)})
    try:
        done = subprocess.run(
            [sys.executable, "-c", "from nodeagent.host.netlink import probe_main; probe_main()"],
            input=request, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False,
            env={**os.environ, "PYTHONPATH": path},
        )
        if done.returncode != 0:
            raise OSError(f"exited with {done.returncode}: {done.stderr.strip()[-300:]}")
        return [Feature(**found) for found in json.loads(done.stdout)]
    except (OSError, ValueError, TypeError, subprocess.TimeoutExpired) as exc:
        reason = f"not probed: the probe process failed: {exc}"
        return [Feature(name, False, reason, probed=False) for name in names]


def probe_main() -> None:
    """The probe child: the kinds to try as JSON on stdin, the features as JSON on stdout."""
    request = json.load(sys.stdin)
    features = probe_here(request["qdiscs"], request["links"])
    json.dump([dataclasses.asdict(feature) for feature in features], sys.stdout)


def probe_here(qdisc_kinds: Sequence[str], link_kinds: Sequence[str]) -> list[Feature]:
    """Try each kind in a fresh anonymous namespace; ENOENT/EOPNOTSUPP mean "kernel lacks it".

    Only "unknown kind" counts as unsupported: any other refusal (EINVAL for missing
    options, EOPNOTSUPP for mq on a single-queue device) proves the kernel knows the kind.
    """
    without_package_init("pyroute2")
    from pyroute2.iproute import IPRoute  # a submodule: see host/lazyimport.py

    try:
        ipr = IPRoute(fileno=_netns_socket(None).detach(), ext_ack=True, groups=0)
    except OSError as exc:
        reason = f"not probed: cannot create a probe namespace (CAP_SYS_ADMIN?): {exc}"
        names = [f"qdisc/{k}" for k in qdisc_kinds] + [f"link/{k}" for k in link_kinds]
        return [Feature(name, False, reason, probed=False) for name in names]
    try:
        links = [_probe(f"link/{k}", functools.partial(_try_link, ipr, k)) for k in link_kinds]
        index = _probe_device(ipr)
        qdiscs = [_probe(f"qdisc/{k}", functools.partial(_try_qdisc, ipr, index, k)) for k in qdisc_kinds]
        return qdiscs + links
    finally:
        ipr.close()  # the namespace dies with its last socket


def _probe_device(ipr: Any) -> int:
    """A veth (multi-queue, like real NICs) when the kernel has veth, else loopback."""
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        ipr.link("add", ifname="probe0", kind="veth", peer="probe1")
    except NetlinkError:
        return 1
    return next(iter(ipr.link_lookup(ifname="probe0")), 1)


def _try_qdisc(ipr: Any, index: int, kind: str) -> None:
    from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST
    from pyroute2.netlink.rtnl import RTM_NEWQDISC
    from pyroute2.netlink.rtnl.tcmsg import tcmsg

    msg = tcmsg()
    msg["family"] = socket.AF_UNSPEC
    msg["index"] = index
    msg["parent"] = TC_H_ROOT
    msg["attrs"] = [["TCA_KIND", kind]]
    msg["header"]["type"] = RTM_NEWQDISC
    msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
    _as_refusal(ipr.nlm_request_batch, [msg])


def _try_link(ipr: Any, kind: str) -> None:
    from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST
    from pyroute2.netlink.rtnl import RTM_NEWLINK
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

    msg = ifinfmsg()
    msg["attrs"] = [
        ["IFLA_IFNAME", f"p{kind}"[:15]],
        ["IFLA_LINKINFO", {"attrs": [["IFLA_INFO_KIND", kind]]}],
    ]
    msg["header"]["type"] = RTM_NEWLINK
    msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE
    _as_refusal(ipr.nlm_request_batch, [msg])


def _as_refusal(call: Callable[[Any], Any], arg: Any) -> None:
    """pyroute2's NetlinkError as the NetlinkRefusal the rest of the adapter raises."""
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        call(arg)
    except NetlinkError as exc:
        message = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], str) else ""
        raise NetlinkRefusal(exc.code, message) from exc


def _probe(name: str, attempt: Callable[[], None]) -> Feature:
    try:
        attempt()
    except NetlinkRefusal as exc:
        kind, _, what = name.partition("/")
        if kind == "qdisc" and exc.code == errno.ENOENT:
            return Feature(
                name, False, f"this kernel has no sch_{what} (not built in, not loadable): {_describe(exc)}"
            )
        if kind == "link" and exc.code == errno.EOPNOTSUPP:
            return Feature(
                name,
                False,
                f"this kernel has no {what} driver (not built in, not loadable): {_describe(exc)}",
            )
    return Feature(name, True)


def _link_info(sock: socket.socket, ifname: str, seq: int) -> tcwire.LinkInfo | None:
    """One interface by name (RTM_GETLINK without an ack); None when there is none."""
    sock.send(tcwire.link_request(ifname, seq))
    while (answer := tcwire.link_answer(sock.recv(1 << 16), seq)) is None:
        pass
    if isinstance(answer, int):
        if answer == errno.ENODEV:
            return None
        raise NetlinkRefusal(answer)
    return answer


def _link(info: tcwire.LinkInfo, netns: str) -> Link:
    return Link(info.name, netns, info.index, info.operstate, info.mtu, info.qdisc)
