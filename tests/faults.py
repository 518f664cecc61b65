"""A TCP proxy that can make a server "go away" and come back: the server keeps its state (the
embedded S3 server keeps objects only in memory), while every client sees the outage. The outage
starts when the test says so, or at a request matching a pattern (``cut_on``, e.g. the first PUT
into a folder), which puts it at an exact point of a job instead of after a guessed delay.
``hold_on`` instead keeps such a request unanswered: the client waits there, at a known point, for
as long as the test needs (for instance to SIGKILL it there)."""

import re
import socket
import threading

TAIL_BYTES = 512
REQUEST_LINE = re.compile(rb"(?:GET|PUT|POST|HEAD|DELETE) /\S* HTTP/1\.[01]")


class TcpProxy:
    def __init__(self, target_port: int, host: str = "127.0.0.1"):
        self.target = (host, target_port)
        self._cut_on: re.Pattern | None = None
        self._cut_countdown = 0
        self._hold = False
        self._released = threading.Event()
        self._count_lock = threading.Lock()
        self.cut = threading.Event()  # set when an armed cut (or hold) happened
        self.requests: list[bytes] = []  # every HTTP request line a client sent through the proxy
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
        self._cut_on, self._cut_countdown, self._hold = re.compile(pattern), nth, False
        self.cut.clear()
        return self

    def hold_on(self, pattern: bytes, nth: int = 1) -> "TcpProxy":
        """Like ``cut_on``, but that request is held, unanswered, on an open connection (``cut`` is
        set then) until ``release()`` hangs up on it; other connections go on."""
        self.cut_on(pattern, nth)
        self._hold = True
        self._released = threading.Event()
        return self

    def release(self) -> None:
        """Hang up on the held request: its client sees the connection closed without an answer."""
        self._released.set()

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
        tail = b""  # the end of the previous chunk: a request line may be split across two
        try:
            while data := source.recv(65536):
                pattern, window = self._cut_on, tail + data
                # Matches that end in this chunk (those within the tail were counted already).
                found = sum(m.end() > len(tail) for m in pattern.finditer(window)) if watch and pattern else 0
                if watch:
                    self.requests += [m.group(0) for m in REQUEST_LINE.finditer(window) if m.end() > len(tail)]
                tail = window[-TAIL_BYTES:]
                with self._count_lock:  # several connections count at once; the test may re-arm
                    fire = False
                    if found and self._cut_on is pattern:
                        self._cut_countdown -= found
                        fire = self._cut_countdown <= 0
                    if fire:
                        self._cut_on = None  # once: after ``start()`` the server is back for good
                if fire:
                    if self._hold:
                        self.cut.set()
                        self._released.wait()  # never forwarded, never answered
                        return
                    self.stop()
                    self.cut.set()  # after the outage is in effect: a test may start() again at once
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


class HangUpServer:
    """A TCP listener that accepts every connection and hangs up at once, counting them: an
    endpoint that is there but never answers, for counting a client's attempts."""

    def __init__(self, host: str = "127.0.0.1"):
        self._listener = socket.create_server((host, 0))
        self.url = f"http://{host}:{self._listener.getsockname()[1]}"
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            client.close()

    def close(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()


# Ctrl-C must reach the command even where the test runner itself ignores SIGINT (a background job
# of a non-interactive shell does, and exec keeps an ignored signal ignored): exec it with SIGINT's
# default disposition, which Python turns into KeyboardInterrupt.
WITH_SIGINT = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
               "os.execv(sys.executable, [sys.executable, '-m', 'foodpipe', *sys.argv[1:]])")
