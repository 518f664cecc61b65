"""A TCP proxy that can make a server "go away" and come back: the server keeps its state (the
embedded S3 server keeps objects only in memory), while every client sees the outage. The outage
starts when the test says so, or at a request matching a pattern (``cut_on``, e.g. the first PUT
into a folder), which puts it at an exact point of a job instead of after a guessed delay."""

import re
import socket
import threading


class TcpProxy:
    def __init__(self, target_port: int, host: str = "127.0.0.1"):
        self.target = (host, target_port)
        self._cut_on: re.Pattern | None = None
        self._cut_countdown = 0
        self.cut = threading.Event()  # set when an armed cut happened
        self.host = host
        with socket.socket() as probe:
            probe.bind((host, 0))
            self.port = probe.getsockname()[1]
        self._listener = None
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def cut_on(self, pattern: bytes, nth: int = 1) -> "TcpProxy":
        """Arm an outage at the ``nth`` request matching the regex ``pattern``: that request never
        reaches the server, and the proxy stops as with ``stop()``."""
        self._cut_on, self._cut_countdown = re.compile(pattern), nth
        self.cut.clear()
        return self

    def start(self) -> "TcpProxy":
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        """The outage: no new connections, and every open one is cut."""
        with self._lock:
            listener, self._listener = self._listener, None
            connections, self._connections = self._connections, []
        if listener:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept(); close alone does not
            except OSError:
                pass
            listener.close()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            connection.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            if self._listener is not listener:  # stopped while this connection came in
                client.close()
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections += [client, upstream]
            for source, sink, watch in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pipe, args=(source, sink, watch), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, watch: bool) -> None:
        try:
            while data := source.recv(65536):
                if watch and self._cut_on and self._cut_on.search(data):
                    self._cut_countdown -= 1
                    if self._cut_countdown == 0:
                        self._cut_on = None  # once: after ``start()`` the server is back for good
                        self.cut.set()
                        self.stop()
                        return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
