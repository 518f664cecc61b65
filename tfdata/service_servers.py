"""``foodpipe input-service dispatcher`` and ``foodpipe input-service worker``: the tf.data service's
two long-running processes (``tfdata.service`` is the trainer's side; a worker serves
``tfdata.augment``, so this is input-pipeline code, not a tool).

Each prints one line when it is serving, one line whenever a peer comes or goes, and stops cleanly
on SIGTERM or Ctrl-C (exit 0). S3 settings come from the environment, as for every command: the
workers read the shards.

Peers: TensorFlow 2.16's dispatcher never forgets a worker (it counts every worker that ever
registered and says nothing when one stops), so foodpipe keeps its own presence channel beside it:
the dispatcher also listens on its port + 1 (``presence_port``), each worker holds a connection
there naming itself, and the closing of that connection (the kernel closes it even when a process
is killed) is the line on both sides.
"""

import signal
import socket
import threading

from foodpipe import s3

WATCH_SECONDS = 2.0  # how often a worker tries to reach a dispatcher it has lost (and signals are seen)


def presence_port(port: int) -> int:
    return port + 1


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def say(role: str, message: str) -> None:
    print(f"input-service {role}: {message}", flush=True)


class Presence:
    """The dispatcher's side of the presence channel: a line when a worker connects and when its
    connection closes."""

    def __init__(self, port: int):
        self.server = socket.create_server(("", port))
        self.present: list[str] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, name="presence", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:  # closed: the dispatcher is stopping
                return
            threading.Thread(target=self._hold, args=(connection,), daemon=True).start()

    def _change(self, name: str, joined: bool) -> None:
        with self.lock:
            self.present.append(name) if joined else self.present.remove(name)
            count = len(self.present)
        say("dispatcher", f"worker {name} {'joined' if joined else 'went away'} "
                          f"({count} worker{'s' if count != 1 else ''})")

    def _hold(self, connection: socket.socket) -> None:
        with connection:
            name = connection.makefile("r").readline().strip()
            if not name:
                return
            self._change(name, True)
            try:
                while connection.recv(64):
                    pass
            except OSError:
                pass
            self._change(name, False)

    def close(self) -> None:
        self.server.close()


def dispatcher(port: int, work_dir: str | None) -> int:
    import tensorflow as tf

    if work_dir:  # the dispatcher journals its state there, to restart where it was (s3:// too)
        from tfdata import filesystem

        filesystem.ensure_readable(work_dir)
    config = tf.data.experimental.service.DispatcherConfig(port=port, work_dir=work_dir,
                                                           fault_tolerant_mode=bool(work_dir))
    stop = stop_on_signals()
    presence = Presence(presence_port(port))  # first: a worker that reaches the dispatcher finds it
    server = tf.data.experimental.service.DispatchServer(config)
    say("dispatcher", f"serving on grpc://{socket.gethostname()}:{port} (workers' presence on port "
                      f"{presence_port(port)}){f', work dir {work_dir}' if work_dir else ''}")
    while not stop.wait(WATCH_SECONDS):
        pass
    presence.close()
    server._stop()  # noqa: SLF001 (DispatchServer.stop is the same, but not in every version)
    say("dispatcher", "stopped")
    return 0


def reachable(host: str, port: int) -> bool:
    """Whether the dispatcher's own port takes connections."""
    try:
        socket.create_connection((host, port), timeout=WATCH_SECONDS).close()
        return True
    except OSError:
        return False


def announce(host: str, port: int, name: str) -> socket.socket | None:
    """A presence connection to the dispatcher at ``host``, naming this worker; None if unreachable."""
    try:
        connection = socket.create_connection((host, presence_port(port)), timeout=WATCH_SECONDS)
        connection.sendall(f"{name}\n".encode())
        connection.settimeout(None)
        return connection
    except OSError:
        return None


def closed(connection: socket.socket) -> bool:
    """Whether the dispatcher closed the presence connection (waits up to ``WATCH_SECONDS``)."""
    connection.settimeout(WATCH_SECONDS)
    try:
        return connection.recv(64) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def worker(dispatcher_address: str, port: int, address: str) -> int:
    import tensorflow as tf

    from tfdata import filesystem, service

    host, dispatcher_port = service.host_port(dispatcher_address)
    dispatcher = f"{host}:{dispatcher_port}"
    filesystem.ensure_readable("s3://any", s3.S3Settings.from_env())  # shards may be on S3: load the plugin now
    service.serve_augmentation()
    config = tf.data.experimental.service.WorkerConfig(dispatcher_address=dispatcher,
                                                       worker_address=f"{address}:%port%", port=port)
    stop = stop_on_signals()
    # Starting registers with the dispatcher and blocks, holding the GIL, until it answers: first
    # wait for it here, where signals are still seen.
    if not reachable(host, dispatcher_port):
        say("worker", f"dispatcher {dispatcher} is not reachable yet (waiting for it)")
        while not reachable(host, dispatcher_port):
            if stop.wait(WATCH_SECONDS / 4):
                say("worker", "stopped")
                return 0
    server = tf.data.experimental.service.WorkerServer(config)
    name = f"{address}:{server._address.rsplit(':', 1)[1]}"  # noqa: SLF001 (the bound port, when --port 0)
    say("worker", f"serving on {name} for dispatcher {dispatcher}")
    connection = announce(host, dispatcher_port, name)
    while not stop.is_set():
        if connection is None:
            connection = None if stop.wait(WATCH_SECONDS) else announce(host, dispatcher_port, name)
            if connection is not None:
                say("worker", f"dispatcher {dispatcher} is back")
        elif closed(connection):
            connection.close()
            connection = None
            say("worker", f"dispatcher {dispatcher} went away (waiting for it)")
    if connection is not None:
        connection.close()
    server._stop()  # noqa: SLF001
    say("worker", "stopped")
    return 0
