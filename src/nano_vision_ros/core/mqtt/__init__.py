"""MQTT side of the device: disk outbox (store-and-forward), paho link, commands, health stats."""
