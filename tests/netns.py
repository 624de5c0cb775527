"""Hosts simulated with Linux network namespaces, for tests of a gateway cluster.

`network("redis", "a", "b")` gives each host a namespace of its own (loopback up, one
address) on a bridge in the root namespace, where the test runner reaches every host at
its address. `cut(a, b)` partitions two hosts from each other, both ways, while both stay
reachable from the runner; `heal(a, b)` joins them again.

A cut drops packets silently, as a failed link or switch does: each side's neighbour entry
for the other is pinned to a link-layer address no port has, so frames leave and are never
received, and connections time out. (A blackhole route, `mode="blackhole"`, makes the
kernel refuse the sender's own packets with EINVAL, which is no real partition: new
connections fail at once instead of timing out. It is kept for comparison.)

Names carry this process's id, so parallel runs do not collide, and a run that left
namespaces behind (killed before its `finally`) has them removed by the next.
Needs root and iproute2 (`ip`); `namespaces_available` says whether they work here.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

PREFIX = "dgnet"  # of every namespace ("dgnet-PID-HOST") and bridge ("dgnetPID") made here
UNUSED_MAC = "02:00:5e:00:de:ad"  # locally administered, on no port: frames go nowhere
CutMode = Literal["drop", "blackhole"]


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `ip ARGS`; raises with its error output when `check` and it fails."""
    done = subprocess.run(["ip", *args], check=False, capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


@dataclass(frozen=True)
class Host:
    """One simulated host: a network namespace with one address on the bridge."""

    name: str  # as the test calls it ("a", "redis")
    namespace: str  # the `ip netns` name
    address: str

    def command(self, args: Sequence[str]) -> list[str]:
        """`args` as a command line that runs inside this host."""
        return ["ip", "netns", "exec", self.namespace, *args]

    def run(self, args: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command inside this host to its end; its output is captured."""
        return subprocess.run(
            self.command(args), capture_output=True, text=True, check=check, timeout=60
        )

    def popen(self, args: Sequence[str], **options: Any) -> subprocess.Popen[bytes]:
        """Start a process inside this host (`ip netns exec` execs it: same pid, so
        signals reach it). `options` are `subprocess.Popen`'s."""
        return subprocess.Popen(self.command(args), **options)


@dataclass(frozen=True)
class Network:
    """Hosts on one bridge; the test runner is `runner` on that bridge."""

    bridge: str
    runner: str  # the root namespace's address on the bridge
    hosts: dict[str, Host]

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def cut(self, one: Host, other: Host, *, mode: CutMode = "drop") -> None:
        """Partition two hosts from each other in both directions; the runner still
        reaches both. Packets are dropped silently (see the module's docstring)."""
        for source, target in ((one, other), (other, one)):
            if mode == "drop":
                pin = f"neigh replace {target.address} lladdr {UNUSED_MAC} dev eth0 nud permanent"
                ip("-n", source.namespace, *pin.split())
            else:
                ip("-n", source.namespace, "route", "add", "blackhole", f"{target.address}/32")

    def heal(self, one: Host, other: Host) -> None:
        """Undo `cut`, whichever its mode: the two hosts reach each other again."""
        for source, target in ((one, other), (other, one)):
            ip("-n", source.namespace, "neigh", "del", target.address, "dev", "eth0", check=False)
            route = f"route del blackhole {target.address}/32"
            ip("-n", source.namespace, *route.split(), check=False)

    @contextlib.contextmanager
    def partition(self, one: Host, other: Host) -> Iterator[None]:
        """Cut the two hosts apart for the block, healed at its end whatever happens."""
        self.cut(one, other)
        try:
            yield
        finally:
            self.heal(one, other)


@contextlib.contextmanager
def network(*names: str) -> Iterator[Network]:
    """Hosts named `names` (up to 200) on a fresh bridge; every process inside them is
    killed and every namespace, link and the bridge removed at the end, even on failure."""
    if not 0 < len(names) <= 200 or len(set(names)) != len(names):
        raise ValueError(f"between 1 and 200 distinct host names, not {names}")
    remove_leftovers()
    pid = os.getpid()
    bridge = f"{PREFIX}{pid}"
    subnet = _free_subnet(pid)
    addresses = list(subnet.hosts())
    runner = str(addresses[0])
    hosts = {
        name: Host(name, f"{PREFIX}-{pid}-{name}", str(addresses[10 + index]))
        for index, name in enumerate(names)
    }
    try:
        ip("link", "add", bridge, "type", "bridge")
        ip("addr", "add", f"{runner}/{subnet.prefixlen}", "dev", bridge)
        ip("link", "set", bridge, "up")
        for index, host in enumerate(hosts.values()):
            _add_host(host, bridge, f"{PREFIX}{pid}.{index}", subnet.prefixlen)
        yield Network(bridge=bridge, runner=runner, hosts=hosts)
    finally:
        for host in hosts.values():
            _remove_namespace(host.namespace)
        ip("link", "del", bridge, check=False)


def _add_host(host: Host, bridge: str, veth: str, prefixlen: int) -> None:
    # Interface names are at most 15 bytes: the root end is named by pid and index, the
    # namespace end is `eth0` in every host.
    ip("netns", "add", host.namespace)
    ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", host.namespace)
    ip("link", "set", veth, "master", bridge, "up")
    ip("-n", host.namespace, "addr", "add", f"{host.address}/{prefixlen}", "dev", "eth0")
    ip("-n", host.namespace, "link", "set", "eth0", "up")
    ip("-n", host.namespace, "link", "set", "lo", "up")


def _free_subnet(pid: int) -> ipaddress.IPv4Network:
    """A /24 in 10.100.0.0/10 chosen by pid, overlapping no address that a route here names
    (another run's bridge, the machine's own networks)."""
    listed = ip("-4", "route", "show", "table", "all").stdout
    used = [
        ipaddress.ip_network(word, strict=False)
        for word in re.findall(r"\d+\.\d+\.\d+\.\d+(?:/\d+)?", listed)
    ]
    for attempt in range(64):
        slot = (pid + attempt * 7919) % (64 * 256)
        subnet = ipaddress.IPv4Network(f"10.{100 + slot // 256}.{slot % 256}.0/24")
        if not any(subnet.overlaps(route) for route in used):
            return subnet
    raise RuntimeError("no free /24 for a test network in 10.100.0.0/10")


def _remove_namespace(namespace: str) -> None:
    """Kill every process inside the namespace, then delete it (its links go with it)."""
    deadline = time.monotonic() + 5
    while pids := _pids(namespace):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    ip("netns", "del", namespace, check=False)


def _pids(namespace: str) -> list[int]:
    listed = ip("netns", "pids", namespace, check=False).stdout.split()
    return [int(pid) for pid in listed if pid.isdigit()]


def _alive(pid: int) -> bool:
    """Whether a process runs with that id (a zombie, killed but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"  # the state follows the command's name


def remove_leftovers() -> None:
    """Remove namespaces and bridges of this harness whose run (pid) is gone."""
    namespaces = [line.split()[0] for line in ip("netns", "list").stdout.splitlines() if line]
    for namespace in namespaces:
        found = re.fullmatch(rf"{PREFIX}-(\d+)-.+", namespace)
        if found and not _alive(int(found[1])):
            _remove_namespace(namespace)
    for line in ip("-o", "link", "show", "type", "bridge").stdout.splitlines():
        found = re.match(rf"\d+: ({PREFIX}(\d+))[:@]", line)
        if found and not _alive(int(found[2])):
            ip("link", "del", found[1], check=False)


@functools.cache
def namespaces_available() -> tuple[bool, str]:
    """Whether hosts can be simulated here, and if not, why (for a test's skip reason):
    the tests need root, `ip`, and namespaces joined by a veth pair that commands run in."""
    if os.geteuid() != 0:
        return False, f"network namespaces need root (this runs as uid {os.geteuid()})"
    if shutil.which("ip") is None:
        return False, "network namespaces need iproute2's `ip` command, not found"
    namespace = f"{PREFIX}-{os.getpid()}-probe"
    veth = f"{PREFIX}{os.getpid()}.p"
    try:
        ip("netns", "add", namespace)
        ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        ip("netns", "exec", namespace, "ip", "link", "set", "lo", "up")
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        return False, f"cannot make a network namespace with a veth pair here: {exc}"
    finally:
        _remove_namespace(namespace)
        ip("link", "del", veth, check=False)
    return True, ""
