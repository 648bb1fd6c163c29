"""A Foxglove WebSocket protocol client (the `websockets` package) for the tests and bench/foxglove.py:
channels from `advertise`, `subscribe`, binary messageData collected per subscription, and the
protobuf class of a channel built from the schema the server advertised."""

from __future__ import annotations

import base64
import json
import struct
import threading

from conftest import wait_for


class FoxgloveClient:
    """The client side of the protocol: channels from `advertise`, binary messageData by subscription."""

    def __init__(self, port: int) -> None:
        from websockets.sync.client import connect

        def attempt():
            try:
                return [
                    connect(
                        f"ws://127.0.0.1:{port}",
                        subprotocols=["foxglove.sdk.v1", "foxglove.websocket.v1"],
                        max_size=None,
                        open_timeout=5,
                    )
                ]
            except OSError:
                return None

        self.ws = wait_for(attempt, 30, what="foxglove_node accepting WebSocket clients")[0]
        assert self.ws.subprotocol == "foxglove.sdk.v1"
        self.channels: dict[str, dict] = {}
        self.server_info: dict = {}
        self.messages: dict[int, list[tuple[int, bytes]]] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            for frame in self.ws:
                if isinstance(frame, str):
                    msg = json.loads(frame)
                    if msg["op"] == "serverInfo":
                        self.server_info = msg
                    elif msg["op"] == "advertise":
                        with self._lock:
                            self.channels.update({c["topic"]: c for c in msg["channels"]})
                elif frame[0] == 0x01:  # messageData: u8 op, u32 subscription, u64 log time, payload
                    sub, t = struct.unpack_from("<IQ", frame, 1)
                    with self._lock:
                        self.messages.setdefault(sub, []).append((t, bytes(frame[13:])))
        except ConnectionClosed:
            pass

    def subscribe(self, sub_id: int, topic: str) -> None:
        ch = wait_for(lambda: self.channels.get(topic), 20, what=f"advertised channel {topic}")
        self.ws.send(json.dumps({"op": "subscribe", "subscriptions": [{"id": sub_id, "channelId": ch["id"]}]}))

    def unsubscribe(self, sub_id: int) -> None:
        self.ws.send(json.dumps({"op": "unsubscribe", "subscriptionIds": [sub_id]}))

    def got(self, sub_id: int) -> list[tuple[int, bytes]]:
        with self._lock:
            return list(self.messages.get(sub_id, []))

    def decoder(self, topic: str):
        """The protobuf class of a channel, built from the schema the server advertised."""
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

        ch = self.channels[topic]
        assert (ch["encoding"], ch["schemaEncoding"]) == ("protobuf", "protobuf"), ch
        pool = descriptor_pool.DescriptorPool()
        for f in descriptor_pb2.FileDescriptorSet.FromString(base64.b64decode(ch["schema"])).file:
            pool.Add(f)
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(ch["schemaName"]))

    def close(self) -> None:
        self.ws.close()
        self._thread.join(5)
