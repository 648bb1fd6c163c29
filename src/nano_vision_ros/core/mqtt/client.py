"""The device's MQTT link (paho-mqtt 2.x): one connection, reconnect with backoff, an LWT status,
and a sender thread that publishes the outbox in order at QoS 1 and deletes a message only on its
PUBACK.

Each connection gets a fresh paho client: our thread opens it with a blocking ``connect()`` (so a
refused connection — wrong CA, TLS error, bad password — is logged with its reason), then paho's
own network thread (``loop_start``, ``reconnect_on_failure=False``) is its only socket writer
(several threads writing through paho's manual ``loop()`` mode can swap packets on the wire). When
the connection ends, the next attempt gets a new client. Outbox messages are handed to it only
while it is connected (at most ``window`` unacknowledged; paho's in-flight limit leaves room for
them plus status, Home Assistant and reply messages, so paho sends them at once and in order). After a disconnect the sender starts again from the oldest
unacknowledged outbox message: order is kept across outages, and a message whose PUBACK was lost
is sent again (at-least-once; consumers deduplicate). Passwords are never logged.
"""

from __future__ import annotations

import collections
import logging
import os
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt

from nano_vision_ros.core.mqtt.outbox import Outbox, OutboxError

log = logging.getLogger(__name__)


@dataclass
class LinkSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "nano-vision"
    keepalive: int = 30
    username: str = ""
    password: str = field(default="", repr=False)
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    tls_insecure: bool = False
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0
    window: int = 100
    will_topic: str = ""


def read_secret(file: str = "", env: str = "") -> str:
    """A password from a file (first line) or an environment variable; '' if neither is set."""
    if file:
        try:
            with open(file, encoding="utf-8") as f:
                return f.readline().rstrip("\r\n")
        except OSError as err:
            raise ValueError(f"password file {file}: {err.strerror}") from None
    if env:
        value = os.environ.get(env)
        if value is None:
            raise ValueError(f"password environment variable {env} is not set")
        return value
    return ""


class MqttLink:
    """Connection + outbox sender. Callbacks run on the network thread: keep them short."""

    def __init__(
        self,
        settings: LinkSettings,
        outbox: Outbox,
        on_connected: Callable[[MqttLink], None] | None = None,
        on_message: Callable[[str, bytes], None] | None = None,
    ) -> None:
        self.s = settings
        self.outbox = outbox
        self._on_connected = on_connected
        self._on_message = on_message
        self.client = self._new_client()
        self._gen = 0  # connection generation: acks and in-flight state belong to one connection
        self._pub_lock = threading.Lock()
        self.connected = threading.Event()
        self._ended = threading.Event()  # the current connection is over
        self._was_connected = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._acks: collections.deque[tuple[int, int]] = collections.deque()  # (generation, mid)
        self._inflight: dict[int, int] = {}  # mid -> outbox id (sender thread only)
        self._last_sent = 0
        self._sender_gen = -1
        self.sent = 0
        self.acked = 0
        self.connects = 0
        self.disconnects = 0
        self.last_error = ""
        self._threads: list[threading.Thread] = []
        self._started = False

    def _new_client(self) -> mqtt.Client:
        st = self.s
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=st.client_id,
            clean_session=True,
            protocol=mqtt.MQTTv311,
            reconnect_on_failure=False,
        )
        c.max_inflight_messages_set(max(1, st.window) + 100)  # + status / HA / command replies
        if st.username:
            c.username_pw_set(st.username, st.password or None)
        if st.tls:
            c.tls_set(
                ca_certs=st.ca_file or None,
                certfile=st.cert_file or None,
                keyfile=st.key_file or None,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
            if st.tls_insecure:
                c.tls_insecure_set(True)
        if st.will_topic:
            c.will_set(st.will_topic, "offline", qos=1, retain=True)
        gen = getattr(self, "_gen", 0)
        c.on_connect = self._handle_connect
        c.on_disconnect = self._handle_disconnect
        c.on_publish = lambda client, userdata, mid, rc, props, gen=gen: self._handle_publish(gen, mid)
        c.on_message = self._handle_message
        return c

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.s.tls else 'mqtt'}://{self.s.host}:{self.s.port}"

    # -- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        if self._started:
            return
        self._started = True
        for target, name in ((self._net_loop, "mqtt-net"), (self._send_loop, "mqtt-send")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 3.0) -> None:
        """Publish `offline` (retained) if connected, disconnect, stop the threads."""
        if self.connected.is_set() and self.s.will_topic:
            try:
                self.client.publish(self.s.will_topic, "offline", qos=1, retain=True).wait_for_publish(1.0)
            except (RuntimeError, ValueError):
                pass
        self._stop.set()
        self._wake.set()
        try:
            self.client.disconnect()
        except Exception:  # noqa: BLE001, S110 - best effort at shutdown
            pass
        for t in self._threads:
            t.join(timeout)

    def notify(self) -> None:
        """New outbox content: wake the sender."""
        self._wake.set()

    # -- network thread -----------------------------------------------------------------------------
    def _net_loop(self) -> None:
        delay = self.s.reconnect_min
        first = True
        while not self._stop.is_set():
            if not first:
                with self._pub_lock:  # the sender is not publishing into the client we replace
                    self._gen += 1
                    self.client = self._new_client()
            first = False
            self._ended.clear()
            try:
                self.client.connect(self.s.host, self.s.port, self.s.keepalive)
            except (OSError, ssl.SSLError, ValueError) as err:
                self._fail(f"cannot connect to {self.url}: {_describe(err)}")
                self._stop.wait(delay)
                delay = min(self.s.reconnect_max, delay * 2)
                continue
            self.client.loop_start()
            while not self._stop.is_set() and not self._ended.wait(0.2):
                pass
            if self.connected.is_set() or self._was_connected:
                delay = self.s.reconnect_min  # the connection had been accepted: retry quickly
            self._was_connected = False
            self.connected.clear()
            try:
                self.client.disconnect()
            except Exception:  # noqa: BLE001, S110 - the old client is dropped anyway
                pass
            self.client.loop_stop()
            if not self._stop.is_set():
                self._stop.wait(delay)
                delay = min(self.s.reconnect_max, delay * 2)

    def _fail(self, text: str) -> None:
        if text != self.last_error:
            log.error("%s", text)
        self.last_error = text

    def _handle_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            hint = (
                " (check username/password)"
                if "authori" in str(reason_code).lower() or "password" in str(reason_code).lower()
                else ""
            )
            self._fail(f"broker {self.url} refused the connection: {reason_code}{hint}")
            return
        self.connects += 1
        self.last_error = ""
        self._was_connected = True
        self.connected.set()
        log.info("connected to %s as %s", self.url, self.s.client_id)
        if self.s.will_topic:
            client.publish(self.s.will_topic, "online", qos=1, retain=True)
        if self._on_connected is not None:
            try:
                self._on_connected(self)
            except Exception as err:  # noqa: BLE001 - a hook must not break the link
                log.error("on_connected hook: %s", err)
        self._wake.set()

    def _handle_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self.connected.is_set() and not self._stop.is_set():
            self.disconnects += 1
            log.warning(
                "disconnected from %s (%s); outbox holds %d, reconnecting", self.url, reason_code, len(self.outbox)
            )
        self.connected.clear()
        self._ended.set()

    def _handle_publish(self, gen: int, mid: int) -> None:
        self._acks.append((gen, mid))
        self._wake.set()

    def _handle_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        if self._on_message is not None:
            try:
                # paho types the payload bytes | bytearray (it is bytes); bytes() of bytes is no copy
                self._on_message(msg.topic, bytes(msg.payload))
            except Exception as err:  # noqa: BLE001 - never let a message kill the loop
                log.error("message on %s not handled: %s", msg.topic[:200], err)

    # -- sender thread ------------------------------------------------------------------------------
    def _drain_acks(self) -> None:
        rows = []
        while self._acks:
            gen, mid = self._acks.popleft()
            if gen != self._sender_gen:
                continue  # an ack of an earlier connection: that message is sent again anyway
            row = self._inflight.pop(mid, None)
            if row is None:
                continue  # status / HA / reply messages (acks are drained only after publish() registered ours)
            rows.append(row)
        self._ack(*rows)

    def _ack(self, *rows: int) -> None:
        if not rows:
            return
        try:
            self.outbox.ack_many(list(rows))  # one transaction (one fsync) for all acks at hand
            self.acked += len(rows)
        except OutboxError as err:
            self._fail(str(err))

    def _send_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            with self._pub_lock:
                if self._sender_gen != self._gen:  # a new connection: start from the oldest unacknowledged
                    self._sender_gen = self._gen
                    self._inflight.clear()
                    self._last_sent = 0
                self._drain_acks()
                if not self.connected.is_set():
                    continue
                room = self.s.window - len(self._inflight)
                if room <= 0:
                    continue
                try:
                    batch = self.outbox.pending(self._last_sent, room)
                except Exception as err:  # noqa: BLE001 - disk trouble: report, retry
                    self._fail(f"outbox read: {err}")
                    continue
                for m in batch:
                    info = self.client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)
                    if info.rc != mqtt.MQTT_ERR_SUCCESS:
                        break  # connection lost: the net thread starts a new generation
                    self._last_sent = m.id
                    self.sent += 1
                    if m.qos == 0:
                        self._ack(m.id)
                        continue
                    self._inflight[info.mid] = m.id
                if batch:
                    self._wake.set()

    # -- direct publishing (status, stats, replies: not stored) ---------------------------------------
    def subscribe(self, topic: str, qos: int = 0) -> bool:
        """Subscribe on the current connection (call from `on_connected`: a reconnect needs it again)."""
        return self.client.subscribe(topic, qos=qos)[0] == mqtt.MQTT_ERR_SUCCESS

    def publish_now(self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False) -> bool:
        if not self.connected.is_set():
            return False
        return self.client.publish(topic, payload, qos=qos, retain=retain).rc == mqtt.MQTT_ERR_SUCCESS

    def stats(self) -> dict[str, object]:
        return {
            "connected": self.connected.is_set(),
            "sent": self.sent,
            "acked": self.acked,
            "inflight": len(self._inflight),
            "connects": self.connects,
            "disconnects": self.disconnects,
            "last_error": self.last_error,
        }


def _describe(err: BaseException) -> str:
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {err.verify_message} (check ca_file and the broker's certificate)"
    if isinstance(err, ssl.SSLError):
        return f"TLS error: {err.reason or err}"
    if isinstance(err, ConnectionRefusedError):
        return "connection refused (broker down or wrong port)"
    return f"{type(err).__name__}: {err}"
