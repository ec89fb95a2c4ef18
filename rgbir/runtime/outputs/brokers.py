"""Records to message brokers: an MQTT topic (paho-mqtt) and a Redis stream (redis-py), each message exactly one
JSON Lines record (``PairResult.json_line``).

``write`` only appends to a bounded buffer and returns: a background thread publishes, so a slow or dead broker
never holds up the pipeline. While a broker is away its buffer keeps the newest ``broker_buffer`` records (the
oldest are dropped and counted), the client reconnects with exponential backoff, and the buffer is sent once it is
back; ``close`` waits at most ``broker_flush`` seconds for what is still buffered and counts the rest as dropped.
Delivery is at least once across a broker loss: a record in flight as the connection breaks may arrive twice.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from abc import abstractmethod
from collections import deque
from importlib.util import find_spec

from ...errors import RgbirError
from ...preflight import readable_file
from ..results import PairResult
from ..stats import Count
from .sinks import Sink

log = logging.getLogger(__name__)

BACKOFF = (0.1, 2.0)  # seconds: the first and the longest wait between reconnection attempts
BATCH = 256  # records per send
PASSWORD_VARIABLE = "RGBIR_MQTT_PASSWORD"
MQTT_PORT, MQTT_TLS_PORT, REDIS_PORT = 1883, 8883, 6379  # where an address without :PORT goes


def mqtt_port(tls: object) -> int:
    """The MQTT port an address without one gets: 8883 over TLS, else 1883."""
    return MQTT_TLS_PORT if tls else MQTT_PORT


def parse_address(text: str, flag: str, default_port: int, what: str) -> tuple[str, int, str]:
    """'HOST[:PORT]/NAME' → (host, port, name); the name (an MQTT topic) may hold further slashes."""
    where, _, name = str(text).partition("/")
    host, colon, port = where.rpartition(":")
    if not colon:
        host, port = where, str(default_port)
    if not host or not name or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise RgbirError(f"{flag} {text}: give HOST[:PORT]/{what}, e.g. 127.0.0.1:{default_port}/rgbir")
    return host, int(port), name


def reachable(host: str, port: int, what: str, flag: str, timeout: float = 3.0) -> None:
    """A TCP connection to the broker opens (then closes): a wrong address fails before the model loads."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise RgbirError(f"cannot reach the {what} at {host}:{port} ({e.strerror or e}): start it, or check "
                         f"{flag}") from e


def check_brokers(config) -> None:
    """The broker settings of a ``SinkConfig``: addresses, the client package, files, and each broker answering."""
    _check_mqtt_options(config)
    for flag, address, default_port, what, package in (
            ("--mqtt", config.mqtt, mqtt_port(config.mqtt_tls), "TOPIC", "paho-mqtt"),
            ("--redis", config.redis, REDIS_PORT, "STREAM", "redis")):
        if not address:
            continue
        if find_spec(package.split("-")[0]) is None:  # paho-mqtt installs the module paho
            raise RgbirError(f"{flag} needs the {package} client: pip install 'rgbir[fleet]'")
        host, port, name = parse_address(address, flag, default_port, what)
        if flag == "--mqtt" and ("+" in name or "#" in name):
            raise RgbirError(f"--mqtt {address}: '+' and '#' are subscription wildcards, not part of a topic to "
                             "publish to")
        reachable(host, port, "MQTT broker" if flag == "--mqtt" else "Redis server", flag)
    if config.broker_buffer < 1 or config.broker_flush < 0:
        raise RgbirError("--broker-buffer must be >= 1 record and --broker-flush >= 0 seconds")
    if config.redis_maxlen < 0:
        raise RgbirError(f"--redis-maxlen {config.redis_maxlen} must be >= 0 (0: never trim)")


def _check_mqtt_options(config) -> None:
    """MQTT options that depend on another: refused in one line rather than ignored; the files must be readable
    and the CA file must load."""
    given = [flag for flag, value in (("--mqtt-tls", config.mqtt_tls), ("--mqtt-user", config.mqtt_user),
                                      ("--mqtt-password-file", config.mqtt_password_file),
                                      ("--mqtt-client-id", config.mqtt_client_id)) if value]
    if given and not config.mqtt:
        raise RgbirError(f"{', '.join(given)} {'configure' if len(given) > 1 else 'configures'} the MQTT sink, and "
                         "there is no --mqtt: give --mqtt HOST[:PORT]/TOPIC, or leave "
                         f"{'them' if len(given) > 1 else 'it'} out")
    if config.mqtt_password_file and not config.mqtt_user:
        raise RgbirError("--mqtt-password-file holds the password of --mqtt-user: give --mqtt-user too, or leave it "
                         "out")
    if config.mqtt_password_file:
        readable_file(config.mqtt_password_file, "MQTT password file")
    if config.mqtt_tls:
        import ssl

        readable_file(config.mqtt_tls, "MQTT CA certificate")
        try:
            ssl.create_default_context(cafile=config.mqtt_tls)
        except ssl.SSLError as e:
            raise RgbirError(f"--mqtt-tls {config.mqtt_tls} holds no PEM CA certificate ({e.reason or e}): give the "
                             "certificate of the authority that signed the broker's") from e


class BrokerSink(Sink):
    """The buffer, the publishing thread, reconnection and the bounded flush that both brokers share. A subclass
    connects, sends a batch (``_send``: how many of it the broker took), reports losing and regaining the broker
    (``_lost``, ``_restored``) and says what it still holds unconfirmed (``_unconfirmed``)."""

    def __init__(self, name: str, capacity: int, flush_s: float):
        self.name, self.capacity, self.flush_s = name, capacity, flush_s
        self.buffer: deque[bytes] = deque()
        self.changed = threading.Condition()
        self.in_flight = 0  # records taken from the buffer by the send under way
        self.dropped = 0  # buffer full while the broker was away, or still unsent when the run ended
        self.reconnects = 0
        self.down_since: float | None = None
        self.retry_now = False  # the broker is back: send without waiting out the backoff
        self.closing = self.abandon = False
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def write(self, result: PairResult, fps: float | None) -> None:
        line = result.json_line()
        with self.changed:
            if len(self.buffer) >= self.capacity:
                self.buffer.popleft()
                self.dropped += 1
            self.buffer.append(line)
            self.changed.notify_all()

    def counts(self) -> list[Count]:
        return [Count("sink", self.name, "records dropped", self.dropped),
                Count("sink", self.name, "reconnects", self.reconnects)]

    def _run(self) -> None:
        delay = BACKOFF[0]
        while True:
            with self.changed:
                self.changed.wait_for(lambda: self.buffer or self.closing)
                if self.abandon or not self.buffer:
                    return
                batch = [self.buffer.popleft() for _ in range(min(len(self.buffer), BATCH))]
                self.in_flight, self.retry_now = len(batch), False
            try:
                sent = self._send(batch)
            except Exception as e:  # the connection broke, or the broker refused the batch: retry it later
                self._lost(f"{type(e).__name__}: {e}")
                sent = 0
            with self.changed:
                for line in reversed(batch[sent:]):  # older than everything buffered: first back, or first dropped
                    if len(self.buffer) < self.capacity:
                        self.buffer.appendleft(line)
                    else:
                        self.dropped += 1
                self.in_flight = 0
                self.changed.notify_all()
                if sent == len(batch):
                    delay = BACKOFF[0]
                    continue
                self.changed.wait_for(lambda: self.abandon or self.retry_now, delay)
                self.retry_now = False
                delay = min(delay * 2, BACKOFF[1])

    def _lost(self, reason: str) -> None:
        """The broker went away: say so once (the buffer fills until it is back)."""
        with self.changed:
            if self.down_since is None:
                self.down_since = time.monotonic()
                log.warning(f"{self.name}: broker lost ({reason}); buffering up to {self.capacity} records and "
                            "reconnecting")

    def _restored(self) -> None:
        """The broker answers (again): count a reconnection if it had been lost, and send without waiting."""
        with self.changed:
            if self.down_since is not None:
                self.reconnects += 1
                log.info(f"{self.name}: broker back after {time.monotonic() - self.down_since:.1f} s, sending "
                         f"{len(self.buffer) + self.in_flight} buffered records")
                self.down_since = None
            self.retry_now = True
            self.changed.notify_all()

    def _flushed(self) -> bool:
        return not self.buffer and not self.in_flight and not self._unconfirmed()

    def _unconfirmed(self) -> int:
        """Records handed to the client library that the broker has not confirmed yet."""
        return 0

    def close(self) -> None:
        """Send what is buffered (waiting at most ``flush_s``), count what could not be sent, disconnect."""
        with self.changed:
            self.closing = True
            self.changed.notify_all()
            self.changed.wait_for(self._flushed, self.flush_s)
            self.abandon = True
            self.changed.notify_all()
        self.thread.join(BACKOFF[1] + 5.0)  # a send under way ends within the client's socket timeout
        self._disconnect()
        with self.changed:
            lost = len(self.buffer) + self.in_flight + self._unconfirmed()
            self.buffer.clear()
            self.dropped += lost
        if lost:
            log.warning(f"{self.name}: {lost} records could not be sent within --broker-flush {self.flush_s:g} s "
                        "and are dropped")

    @abstractmethod
    def _send(self, batch: list[bytes]) -> int:
        """Send the batch, oldest first; how many of it (from the start) the broker or its client took. Raises
        (or takes none) when the broker is away."""

    @abstractmethod
    def _disconnect(self) -> None: ...


class MqttSink(BrokerSink):
    """Publishes to an MQTT topic with paho-mqtt (2.x API): QoS 0 or 1, optional TLS and user/password. paho's
    network thread reconnects with backoff; with QoS 1 it keeps each handed-over record until the broker
    acknowledges it and re-sends it after a reconnection."""

    WINDOW = 1000  # QoS 1 records handed to paho and not yet acknowledged, at most

    def __init__(self, address: str, qos: int = 0, tls_ca: str | None = None, user: str | None = None,
                 password_file: str | None = None, client_id: str | None = None, capacity: int = 10000,
                 flush_s: float = 5.0, connect_timeout: float = 5.0):
        import paho.mqtt.client as mqtt

        host, port, self.topic = parse_address(address, "--mqtt", mqtt_port(tls_ca), "TOPIC")
        super().__init__(f"mqtt {host}:{port}/{self.topic}", capacity, flush_s)
        self.qos, self.handed, self.acked = qos, 0, 0
        self.connected = threading.Event()
        self.refused: str | None = None
        self.mqtt = mqtt
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"rgbir-{socket.gethostname()}-{os.getpid()}")
        if user:
            self.client.username_pw_set(user, _password(password_file))
        if tls_ca:
            self.client.tls_set(ca_certs=tls_ca)
        self.client.reconnect_delay_set(*BACKOFF)
        self.client.on_connect, self.client.on_disconnect = self._on_connect, self._on_disconnect
        self.client.on_publish = self._on_publish
        try:
            self.client.connect(host, port, keepalive=30)
        except OSError as e:
            raise RgbirError(f"cannot connect to the MQTT broker at {host}:{port} ({e.strerror or e}): start it, "
                             "or check --mqtt and --mqtt-tls") from e
        self.client.loop_start()
        if not self.connected.wait(connect_timeout) or self.refused:
            self.abandon = True  # no 'broker lost' warning: it was never there
            self.client.disconnect()
            self.client.loop_stop()
            raise self._not_accepted(f"{host}:{port}", connect_timeout, bool(user))
        self.thread.start()

    def _not_accepted(self, where: str, waited: float, credentials: bool) -> RgbirError:
        """Why the broker did not take the connection: no MQTT answer at all, bad credentials, or another refusal."""
        if self.refused is None:
            return RgbirError(f"{where} accepted a TCP connection but sent no MQTT answer within {waited:g} s: is it "
                              "an MQTT broker (and is --mqtt-tls right for its port)?")
        fix = "check --mqtt-user and the password" if credentials else \
            "it wants a user name and password: give --mqtt-user and --mqtt-password-file" \
            if "authori" in self.refused.lower() or "password" in self.refused.lower() else \
            "check the broker's log for why"
        return RgbirError(f"the MQTT broker at {where} did not accept the connection ({self.refused}): {fix}")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.refused = str(reason_code)
        else:
            self._restored()
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if not self.abandon:
            self._lost(f"disconnected: {reason_code}")

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self.changed:
            self.acked += 1
            self.retry_now = True  # room in the window again
            self.changed.notify_all()

    def _send(self, batch: list[bytes]) -> int:
        sent = 0
        for line in batch:
            if not self.client.is_connected() or self._unconfirmed() >= self.WINDOW:
                break
            with self.changed:
                self.handed += 1
            info = self.client.publish(self.topic, line, qos=self.qos)
            # QoS 1: paho keeps the message (also when the connection just broke) and sends it after reconnecting
            if info.rc == self.mqtt.MQTT_ERR_SUCCESS or (self.qos and info.rc == self.mqtt.MQTT_ERR_NO_CONN):
                sent += 1
                continue
            with self.changed:
                self.handed -= 1
            break
        return sent

    def _unconfirmed(self) -> int:
        return self.handed - self.acked if self.qos else 0

    def _disconnect(self) -> None:
        self.client.disconnect()  # after the packets already queued
        self.client.loop_stop()


class RedisSink(BrokerSink):
    """Appends to a Redis stream with redis-py: ``XADD STREAM MAXLEN ~ N * record <json>``, one transaction per
    batch (all of it or none)."""

    def __init__(self, address: str, maxlen: int = 100000, capacity: int = 10000, flush_s: float = 5.0):
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        host, port, self.stream = parse_address(address, "--redis", REDIS_PORT, "STREAM")
        super().__init__(f"redis {host}:{port}/{self.stream}", capacity, flush_s)
        self.maxlen = maxlen or None
        self.client = redis.Redis(host, port, socket_timeout=2.0, socket_connect_timeout=2.0,
                                  retry=Retry(NoBackoff(), 0))  # the publishing thread retries, with backoff
        try:
            kind = self.client.type(self.stream).decode()
        except redis.RedisError as e:
            raise RgbirError(f"cannot use the Redis server at {host}:{port} ({e}): start it, or check --redis") from e
        if kind not in ("none", "stream"):
            raise RgbirError(f"--redis {address}: the key '{self.stream}' holds a {kind}, not a stream: name another")
        self.thread.start()

    def _send(self, batch: list[bytes]) -> int:
        pipe = self.client.pipeline(transaction=True)
        for line in batch:
            pipe.xadd(self.stream, {"record": line}, maxlen=self.maxlen, approximate=True)
        pipe.execute()  # raises when the server is away: the publishing thread retries the batch
        self._restored()
        return len(batch)

    def _disconnect(self) -> None:
        self.client.close()


def _password(path: str | None) -> str | None:
    """The MQTT password: the file's first line, else the environment variable (never a command-line flag, which
    other users can read in the process list)."""
    if path:
        lines = readable_file(path, "MQTT password file").read_text().splitlines()
        return lines[0] if lines else ""
    return os.environ.get(PASSWORD_VARIABLE)
