"""Netlink adapter: namespaces, interfaces, qdiscs and classes, kernel feature probing.

The only module importing pyroute2. It speaks kernel units (bytes/s, psched ticks) and leaves
every decision (what to write, canonical spellings, ownership) to the network mechanism; it
implements that mechanism's port (NetPort, over the plain values of netvalues.py) and turns
NetlinkError/OSError into HostError.

Namespaces: a named namespace is a file in `netns_dir` (as `ip netns add` creates it). Sockets
are opened inside it by a short-lived thread that setns()es and exits, which costs about a
millisecond instead of pyroute2's forked helper process, and never moves the agent's own
threads. One socket per namespace is cached and checked against the namespace file's inode on
each use, so a namespace deleted and re-created under the same name is not served by a socket
into the dead one. Feature probing runs in an anonymous namespace that lives only as long as
its socket: nothing is mounted, nothing can be left behind, the host's interfaces are untouched.

Threads: every pyroute2 call runs on one worker thread owned by the adapter (see _on_worker),
so callers may be threads or coroutines, and requests are serialised.

What a profile apply does on every request goes through tcwire.py instead of pyroute2: tc
writes (qdiscs and classes replaced or deleted), the interface lookups and the qdisc and class
dumps of roots(). They are packed and decoded with `struct` on a plain netlink socket of their
own into the same namespace (opened with the pyroute2 one, closed with it): pyroute2's codec
spent 0.5 ms of CPU computing unsent rate tables per HTB class and about a millisecond decoding
each dump. pyroute2 still lists links (inventory) and probes kernel features.

Privileges: CAP_NET_ADMIN for tc changes; CAP_SYS_ADMIN for setns() into named namespaces and
for the probe namespace (without it, features are reported as not probed); AF_NETLINK.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Concatenate, ParamSpec, TypeVar

from pyroute2.iproute import IPRoute  # a submodule: see lazynetlink.without_package_init
from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import (
    RTM_GETLINK,
    RTM_NEWLINK,
    RTM_NEWQDISC,
    TC_H_ROOT,
)
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.tcmsg import tcmsg

from nodeagent.errors import HostError
from nodeagent.host import tcwire
from nodeagent.host.lazynetlink import list_namespaces
from nodeagent.host.netvalues import Feature, HtbClassParams, Link, Qdisc, RootState, TbfParams

CLONE_NEWNET = 0x40000000
NETLINK_ROUTE = 0
_REPLACE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE

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


def _open(path: str | None) -> IPRoute:
    sock = _netns_socket(path)
    return IPRoute(fileno=sock.detach(), ext_ack=True, groups=0)


def _tc_socket(path: str | None) -> socket.socket:
    """The socket tc writes use (tcwire): in the namespace at `path`, or the agent's own for
    None; extended acks on (the kernel says why it refuses), capped (our request is not echoed)."""
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


def _send_tc(sock: socket.socket, data: bytes, seq: int) -> None:
    """Send one tc request and wait for its acknowledgement; NetlinkError when refused."""
    sock.send(data)
    while (answer := tcwire.acknowledgement(sock.recv(65536), seq)) is None:
        pass  # not ours (nothing else is sent on this socket): keep reading
    code, message = answer
    if code:
        raise NetlinkError(code, message or None)


def _describe(exc: NetlinkError) -> str:
    message = exc.args[1] if len(exc.args) > 1 and exc.args[1] else os.strerror(exc.code)
    return f"{message} (errno {exc.code})"


def _on_worker(method: Callable[Concatenate[NetlinkHost, P], R]) -> Callable[Concatenate[NetlinkHost, P], R]:
    """Run the method on the adapter's own thread.

    pyroute2's synchronous API drives a private asyncio loop and fails with "This event loop
    is already running" when called from a coroutine (e.g. a grpc.aio servicer), and its sockets
    are best used from one thread. One worker thread gives both: callers in any context, and
    netlink requests serialised (they take well under a millisecond each).
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
    """NetPort over pyroute2, safe to call from any thread or coroutine."""

    def __init__(self, netns_dir: str = "/run/netns") -> None:
        self.netns_dir = netns_dir
        self._conns: dict[str, tuple[tuple[int, int], IPRoute, socket.socket]] = {}
        self._seq = 0  # of the last tc request sent (tcwire)
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

    def _ipr(self, netns: str) -> IPRoute:
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
            ipr = _open(path or None) if netns else IPRoute(ext_ack=True, groups=0)
        except OSError as exc:
            raise HostError(f"netns:{netns or '-'}", f"cannot open netlink: {exc}", exc.errno) from exc
        try:
            tc = _tc_socket(path or None)
        except OSError as exc:
            ipr.close()
            raise HostError(f"netns:{netns or '-'}", f"cannot open netlink: {exc}", exc.errno) from exc
        self._conns[netns] = (ident, ipr, tc)
        return ipr

    def _forget(self, netns: str) -> None:
        for known in [k for k in self._indexes if k[0] == netns]:
            del self._indexes[known]
        cached = self._conns.pop(netns, None)
        if cached is not None:
            cached[1].close()
            cached[2].close()

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
    def _session(self, netns: str, what: str) -> Iterator[IPRoute]:
        """Netlink calls on `netns`, with errors translated into HostError."""
        key = f"{netns or '-'}/{what}"
        ipr = self._ipr(netns)
        try:
            yield ipr
        except NetlinkError as exc:
            raise HostError(key, _describe(exc), exc.code) from exc
        except OSError as exc:
            self._forget(netns)
            raise HostError(key, f"netlink socket failed: {exc}", exc.errno) from exc

    def _index(self, netns: str, ifname: str) -> int:
        """The interface's index as roots() last saw it (the network mechanism reads the roots
        right before it writes them), else looked up: one RTM_GETLINK, which pyroute2 decodes
        slowly, fewer per tc write."""
        index = self._indexes.get((netns, ifname))
        if index is None:
            found = self._link_info(netns, ifname)
            index = None if found is None else found.index
            if index is None:
                raise HostError(f"{netns or '-'}/{ifname}", "no such interface", errno.ENODEV)
            self._indexes[(netns, ifname)] = index
        return index

    def _tc_request(self, netns: str, ifname: str, request: tcwire.TcRequest) -> None:
        """`request` for `ifname` on the namespace's tc socket (open within a _session); when
        the kernel no longer knows a remembered index (the interface was re-created since),
        looked up again once."""
        remembered = (netns, ifname) in self._indexes
        try:
            self._send(netns, request, self._index(netns, ifname))
        except NetlinkError as exc:
            if not remembered or exc.code != errno.ENODEV:
                raise
            self._indexes.pop((netns, ifname), None)
            self._send(netns, request, self._index(netns, ifname))

    def _send(self, netns: str, request: tcwire.TcRequest, index: int) -> None:
        seq = self._next_seq()
        _send_tc(self._conns[netns][2], request.encode(index, seq), seq)

    def _next_seq(self) -> int:
        self._seq = self._seq % 0x7FFFFFFF + 1
        return self._seq

    def _link_info(self, netns: str, ifname: str) -> tcwire.LinkInfo | None:
        """One interface by name, on the tc socket (pyroute2 decoded every attribute of the
        link, statistics included, for the five the agent reads); None when there is none."""
        sock, seq = self._conns[netns][2], self._next_seq()
        sock.send(tcwire.link_request(ifname, seq))
        while (answer := tcwire.link_answer(sock.recv(1 << 16), seq)) is None:
            pass
        if isinstance(answer, int):
            if answer == errno.ENODEV:
                return None
            raise NetlinkError(answer)
        return answer

    def _root_qdiscs(self, netns: str) -> list[tcwire.DumpedQdisc]:
        """Every qdisc of the namespace, dumped on the tc socket."""
        sock, seq = self._conns[netns][2], self._next_seq()
        sock.send(tcwire.qdisc_dump(seq))
        found: list[tcwire.DumpedQdisc] = []
        while True:
            qdiscs, done, error = tcwire.dumped_qdiscs(sock.recv(1 << 16), seq)
            found += qdiscs
            if error:
                raise NetlinkError(error)
            if done:
                return found

    def _htb_classes(self, netns: str, index: int, major: int) -> tuple[HtbClassParams, ...]:
        """The HTB classes below `major`: on the tc socket, decoded by tcwire (pyroute2 took
        about a millisecond of CPU to decode the four classes of a small tree)."""
        sock, seq = self._conns[netns][2], self._next_seq()
        sock.send(tcwire.class_dump(index, seq))
        found: list[HtbClassParams] = []
        while True:
            part = tcwire.dumped_classes(sock.recv(1 << 16), seq)
            found += [
                c.htb for c in part.classes
                if c.index == index and c.handle >> 16 == major and c.htb is not None
            ]
            if part.error:
                raise NetlinkError(part.error)
            if part.done:
                return tuple(sorted(found, key=lambda c: c.minor))

    # ------------------------------------------------------------ reading

    def namespaces(self) -> list[str]:
        return list_namespaces(self.netns_dir)

    @_on_worker
    def links(self, netns: str) -> list[Link]:
        with self._session(netns, "links") as ipr:
            return sorted((_link(msg, netns) for msg in ipr.get_links()), key=lambda link: link.index)

    @_on_worker
    def roots(self, netns: str, ifnames: Sequence[str], htb_major: int | None) -> dict[str, RootState]:
        with self._session(netns, "roots"):
            links: dict[int, Link] = {}
            for name in dict.fromkeys(ifnames):
                info = self._link_info(netns, name)
                self._indexes.pop((netns, name), None)
                if info is not None:
                    links[info.index] = Link(
                        info.name, netns, info.index, info.operstate, info.mtu, info.qdisc
                    )
                    self._indexes[(netns, name)] = info.index
            if not links:
                return {}
            qdiscs = {
                q.index: Qdisc(q.kind, q.handle, q.params)
                for q in self._root_qdiscs(netns)
                if q.index in links and q.parent == TC_H_ROOT
            }
            out: dict[str, RootState] = {}
            for index, link in links.items():
                qdisc = qdiscs.get(index)
                ours = qdisc is not None and qdisc.kind == "htb" and qdisc.handle >> 16 == htb_major
                classes = self._htb_classes(netns, index, qdisc.handle >> 16) if ours and qdisc else ()
                out[link.name] = RootState(link, qdisc, classes)
            return out

    # ------------------------------------------------------------ writing

    def _request(self, ipr: IPRoute, msg: Any, msg_type: int, flags: int) -> None:
        msg["header"]["type"] = msg_type
        msg["header"]["flags"] = flags
        ipr.nlm_request_batch([msg])

    @_on_worker
    def replace_htb_root(self, netns: str, ifname: str, major: int, default_minor: int) -> None:
        with self._session(netns, f"{ifname}/root"):
            self._tc_request(netns, ifname, tcwire.htb_root(major, default_minor))

    @_on_worker
    def replace_htb_class(self, netns: str, ifname: str, major: int, params: HtbClassParams) -> None:
        with self._session(netns, f"{ifname}/class {major:x}:{params.minor:x}"):
            self._tc_request(netns, ifname, tcwire.htb_class(major, params))

    @_on_worker
    def delete_htb_class(self, netns: str, ifname: str, major: int, minor: int) -> None:
        with self._session(netns, f"{ifname}/class {major:x}:{minor:x}"):
            try:
                self._tc_request(netns, ifname, tcwire.delete_class(major, minor))
            except NetlinkError as exc:
                if exc.code != errno.ENOENT:
                    raise

    @_on_worker
    def replace_tbf_root(self, netns: str, ifname: str, major: int, params: TbfParams) -> None:
        with self._session(netns, f"{ifname}/root"):
            self._tc_request(netns, ifname, tcwire.tbf_root(major, params))

    @_on_worker
    def delete_root(self, netns: str, ifname: str, handle: int) -> None:
        with self._session(netns, f"{ifname}/root"):
            self._tc_request(netns, ifname, tcwire.delete_root(handle))

    # ------------------------------------------------------------ probing

    @_on_worker
    def probe_features(self, qdisc_kinds: Sequence[str], link_kinds: Sequence[str]) -> list[Feature]:
        """Try each kind in a fresh anonymous namespace; ENOENT/EOPNOTSUPP mean "kernel lacks it".

        Only "unknown kind" counts as unsupported: any other refusal (EINVAL for missing
        options, EOPNOTSUPP for mq on a single-queue device) proves the kernel knows the kind.
        """
        try:
            ipr = _open(None)
        except OSError as exc:
            reason = f"not probed: cannot create a probe namespace (CAP_SYS_ADMIN?): {exc}"
            names = [f"qdisc/{k}" for k in qdisc_kinds] + [f"link/{k}" for k in link_kinds]
            return [Feature(name, False, reason, probed=False) for name in names]
        try:
            links = [_probe(f"link/{k}", functools.partial(self._try_link, ipr, k)) for k in link_kinds]
            index = self._probe_device(ipr)
            qdiscs = [
                _probe(f"qdisc/{k}", functools.partial(self._try_qdisc, ipr, index, k)) for k in qdisc_kinds
            ]
            return qdiscs + links
        finally:
            ipr.close()  # the namespace dies with its last socket

    def _probe_device(self, ipr: IPRoute) -> int:
        """A veth (multi-queue, like real NICs) when the kernel has veth, else loopback."""
        try:
            ipr.link("add", ifname="probe0", kind="veth", peer="probe1")
            return _lookup(ipr, "probe0") or 1
        except NetlinkError:
            return 1

    def _try_qdisc(self, ipr: IPRoute, index: int, kind: str) -> None:
        self._request(ipr, _tc(index, 0, TC_H_ROOT, kind), RTM_NEWQDISC, _REPLACE)

    def _try_link(self, ipr: IPRoute, kind: str) -> None:
        msg = ifinfmsg()
        msg["attrs"] = [
            ["IFLA_IFNAME", f"p{kind}"[:15]],
            ["IFLA_LINKINFO", {"attrs": [["IFLA_INFO_KIND", kind]]}],
        ]
        self._request(ipr, msg, RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE)


def _probe(name: str, attempt: Callable[[], None]) -> Feature:
    try:
        attempt()
    except NetlinkError as exc:
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


def _get_link(ipr: IPRoute, ifname: str) -> Any:
    """The RTM_NEWLINK message of one interface (None if there is none), by one request.

    Deliberately without NLM_F_ACK: pyroute2's link_lookup() asks for an ACK but stops at the
    reply, so every ACK lands in the socket's orphan queue and stays there (a leak of ~1 KiB
    per lookup in a long-running agent).
    """
    try:
        replies = ipr.link((RTM_GETLINK, NLM_F_REQUEST), ifname=ifname)
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise
    return replies[0] if replies else None


def _lookup(ipr: IPRoute, ifname: str) -> int | None:
    msg = _get_link(ipr, ifname)
    return None if msg is None else int(msg["index"])


def _link(msg: Any, netns: str) -> Link:
    return Link(
        name=str(msg.get_attr("IFLA_IFNAME")),
        netns=netns,
        index=int(msg["index"]),
        state=str(msg.get_attr("IFLA_OPERSTATE") or "unknown").lower(),
        mtu=int(msg.get_attr("IFLA_MTU") or 0),
        root_qdisc=str(msg.get_attr("IFLA_QDISC") or ""),
    )


def _tc(index: int, handle: int, parent: int, kind: str | None, options: Any = None) -> Any:
    msg = tcmsg()
    msg["family"] = socket.AF_UNSPEC
    msg["index"] = index
    msg["handle"] = handle
    msg["parent"] = parent
    msg["attrs"] = [["TCA_KIND", kind]] if kind else []
    if options is not None:
        msg["attrs"].append(["TCA_OPTIONS", options])
    return msg
