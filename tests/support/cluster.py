"""A throwaway Redis Cluster of the tests' own: three primaries on free loopback ports.

Three ``redis-server`` processes in cluster mode (no persistence), joined with
``redis-cli --cluster create`` (no replicas). Tests assume every node is a primary and that
they may reconfigure it, so there is no option to use an existing cluster instead.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.support.servers import RedisProcess, ServerUnavailable, free_port


@dataclass
class RedisClusterProcesses:
    """The primaries of a test cluster and their processes."""

    ports: list[int]
    processes: list[RedisProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports) + "/"

    def node(self, port: int) -> redis.Redis:
        """A plain client on one node, for assertions (CLUSTER KEYSLOT, INFO, DBSIZE)."""
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


def start_cluster(
    directory: Path, primaries: int = 3, extra_args: Sequence[str] = ()
) -> RedisClusterProcesses:
    cli = shutil.which("redis-cli")
    if cli is None:
        raise ServerUnavailable(
            "redis-cli is not installed (it creates the test Redis Cluster): install it "
            "(Debian/Ubuntu: apt-get install redis-tools, or redis-server, which includes it)"
        )
    processes: list[RedisProcess] = []
    try:
        for _ in range(primaries):
            port = free_port()
            processes.append(
                RedisProcess(
                    port=port,
                    directory=directory,
                    extra_args=(
                        "--cluster-enabled", "yes",
                        "--cluster-config-file", str(directory / f"nodes-{port}.conf"),
                        "--cluster-port", str(free_port()),
                        *extra_args,
                    ),
                ).start()
            )  # fmt: skip
        cluster = RedisClusterProcesses([p.port for p in processes], processes)
        created = subprocess.run(
            [
                cli, "--cluster", "create",
                *(f"127.0.0.1:{port}" for port in cluster.ports),
                "--cluster-replicas", "0", "--cluster-yes",
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )  # fmt: skip
        if created.returncode != 0:
            raise ServerUnavailable(
                "redis-cli --cluster create failed: "
                + (created.stdout + created.stderr).decode(errors="replace")[-2000:]
            )
        _wait_until_ok(cluster)
        return cluster
    except BaseException:
        for process in processes:
            process.stop()
        raise


def _wait_until_ok(cluster: RedisClusterProcesses, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    pending = list(cluster.ports)
    while pending:
        port = pending[0]
        with cluster.node(port) as node:
            info = node.execute_command("CLUSTER INFO")  # parsed into a dict by redis-py
        if info.get("cluster_state") == "ok":
            pending.pop(0)
            continue
        if time.monotonic() > deadline:
            raise ServerUnavailable(f"Redis Cluster node {port} not ok after {timeout:.0f} s")
        time.sleep(0.05)
