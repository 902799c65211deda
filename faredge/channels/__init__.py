"""Adapters to the outside world: the only modules importing paho, pyserial and grpc."""
