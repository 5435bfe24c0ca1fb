"""Hosts of our own on this machine: network namespaces joined to a bridge by veth pairs.

The addresses (10.213.N.0/24, N from the pid) exist only on the bridge and in the
namespaces made here; no namespace has a default route, so nothing leaves the machine.
`cut(i)` / `restore(i)` take one host's link down and up, as a pulled cable would.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def can_make_namespaces() -> str | None:
    """None if namespaces can be made here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    name = f"tfprobe{os.getpid()}"
    try:
        ip("netns", "add", name)
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        return f"ip netns add failed: {getattr(exc, 'stderr', exc)}"
    ip("netns", "del", name)
    return None


@dataclass
class Network:
    bridge: str
    gateway: str  # the bridge's address, where the shared services listen
    namespaces: list[str]
    addresses: list[str]
    links: list[str]  # the root-side end of each host's veth

    def argv(self, index: int, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespaces[index], *argv]

    def cut(self, index: int) -> None:
        ip("link", "set", self.links[index], "down")

    def restore(self, index: int) -> None:
        ip("link", "set", self.links[index], "up")


@contextlib.contextmanager
def network(hosts: int) -> Iterator[Network]:
    tag = os.getpid() % 10000
    octet = 1 + os.getpid() % 250
    net = Network(f"tfbr{tag}", f"10.213.{octet}.1", [], [], [])
    try:
        ip("link", "add", net.bridge, "type", "bridge")
        ip("addr", "add", f"{net.gateway}/24", "dev", net.bridge)
        ip("link", "set", net.bridge, "up")
        for i in range(hosts):
            ns, outside = f"tf{tag}h{i}", f"tf{tag}v{i}"
            ip("netns", "add", ns)
            net.namespaces.append(ns)
            ip("link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", ns)
            net.links.append(outside)
            ip("link", "set", outside, "master", net.bridge)
            ip("link", "set", outside, "up")
            address = f"10.213.{octet}.{10 + i}"
            ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
            net.addresses.append(address)
        yield net
    finally:
        for ns in net.namespaces:
            with contextlib.suppress(subprocess.CalledProcessError):
                ip("netns", "del", ns)
        with contextlib.suppress(subprocess.CalledProcessError):
            ip("link", "del", net.bridge)
