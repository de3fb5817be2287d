"""Worker processes that each listen on a socket of their own (SO_REUSEPORT), under uvicorn's supervisor.

With one shared listening socket, whichever worker wakes first accepts a burst of new connections: seen here,
36 of 50 keep-alive clients on one of two workers, whose requests then waited 2.5 times as long. With a socket
per worker the kernel spreads connections across the workers by a hash of their addresses.
"""

from __future__ import annotations

import logging
import socket

from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.supervisors.multiprocess import Multiprocess, Process

logger = logging.getLogger("uvicorn.error")


def reuseport_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` listening sockets on one address; port 0 picks a free port for all of them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets: list[socket.socket] = []
    for _ in range(count):
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        port = sock.getsockname()[1]
        sock.set_inheritable(True)
        sockets.append(sock)
    return sockets


class ReusePortWorkers(Multiprocess):
    """uvicorn's Multiprocess, with worker i always on socket i (also when it is restarted)."""

    def __init__(self, config: Config):
        try:
            self.slots = reuseport_sockets(config.host, config.port, config.workers)
        except OSError as error:
            logger.error(error)
            raise SystemExit(STARTUP_FAILURE) from error
        logger.info("Uvicorn running on http://%s:%d with %d workers, one socket each (Press CTRL+C to quit)",
                    config.host, self.slots[0].getsockname()[1], config.workers)
        super().__init__(config, sockets=[])

    def _new(self, idx: int) -> Process:
        process = Process(self.config, [self.slots[idx]])
        process.start()
        return process

    def init_processes(self) -> None:
        self.processes = [self._new(idx) for idx in range(self.processes_num)]

    def restart_all(self) -> None:
        """Replace each worker, the new one in service before the old one goes (as uvicorn does)."""
        for idx, old in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new = self._new(idx)
            if not new.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new.kill()
                new.join()
                if not self.should_exit.is_set():
                    logger.error("New child process [%s] was not ready in time; keeping [%s]", new.pid, old.pid)
                return
            old.terminate()
            old.join()
            self.processes[idx] = new

    def keep_subprocess_alive(self) -> None:
        if self.should_exit.is_set():
            return
        for idx, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()  # hung
            process.join()
            if process.exitcode == STARTUP_FAILURE:  # the app itself cannot start: restarting would fail the same way
                logger.error("Child process [%s] failed to start, stopping the parent process.", process.pid)
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            logger.info("Child process [%s] died", process.pid)
            self.processes[idx] = self._new(idx)
