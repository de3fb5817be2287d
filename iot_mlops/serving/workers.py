"""Worker processes that each listen on a socket of their own (SO_REUSEPORT), under uvicorn's supervisor.

With one shared listening socket, whichever worker wakes first accepts a burst of new connections: seen here,
36 of 50 keep-alive clients on one of two workers, whose requests then waited 2.5 times as long. With a socket
per worker the kernel spreads connections across the workers by a hash of their addresses.
"""

from __future__ import annotations

import logging
import os
import socket
from multiprocessing.connection import wait

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
    """uvicorn's Multiprocess, with worker i always on socket i (also when it is restarted).

    A worker's socket stays in the kernel's SO_REUSEPORT group while any process holds it open, the parent included:
    a dead worker's socket would keep taking its share of new connections, with nobody accepting them, until the
    replacement had started (seconds: it loads the models). So the parent closes it as soon as the worker dies, and
    the replacement gets a fresh socket, bound but not listening until that worker is ready to serve.
    """

    def __init__(self, config: Config):
        try:
            self.slots = reuseport_sockets(config.host, config.port, config.workers)
        except OSError as error:
            logger.error(error)
            raise SystemExit(STARTUP_FAILURE) from error
        self.port = self.slots[0].getsockname()[1]
        logger.info("Uvicorn running on http://%s:%d with %d workers, one socket each (Press CTRL+C to quit)",
                    config.host, self.port, config.workers)
        super().__init__(config, sockets=[])

    def _new(self, idx: int) -> Process:
        process = Process(self.config, [self.slots[idx]])
        process.start()
        return process

    def _new_socket(self, idx: int) -> None:
        self.slots[idx].close()
        try:
            self.slots[idx] = reuseport_sockets(self.config.host, self.port, 1)[0]
        except OSError as error:  # the port was taken meanwhile: serving on fewer sockets would hide it
            logger.error("Cannot bind a socket for a new worker: %s; stopping.", error)
            self.should_exit.set()

    def init_processes(self) -> None:
        self.processes = [self._new(idx) for idx in range(self.processes_num)]

    def run(self) -> None:
        """uvicorn's loop, woken at once when a worker exits instead of at its next half-second tick."""
        logger.info("Started parent process [%d]", os.getpid())
        self.init_processes()
        while not self.should_exit.is_set():
            wait([process.process.sentinel for process in self.processes], timeout=0.5)
            self.handle_signals()
            self.keep_subprocess_alive()
        self.terminate_all()
        self.join_all()
        logger.info("Stopping parent process [%d]", os.getpid())

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
        # Dead workers' sockets first, before the healthchecks (each may wait for a busy worker). A worker is dead once
        # its sentinel is ready: the kernel closed its files; waitpid may not report it for a moment yet, and a ping
        # of it meanwhile would wait the whole healthcheck timeout.
        dead = {idx for idx, process in enumerate(self.processes) if wait([process.process.sentinel], timeout=0)}
        for idx in dead:
            self._new_socket(idx)
        for idx, process in enumerate(self.processes):
            if idx not in dead and process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()  # hung, or reaped
            process.join()
            if idx not in dead:
                self._new_socket(idx)
            if process.exitcode == STARTUP_FAILURE:  # the app itself cannot start: restarting would fail the same way
                logger.error("Child process [%s] failed to start, stopping the parent process.", process.pid)
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            logger.info("Child process [%s] died", process.pid)
            self.processes[idx] = self._new(idx)
