"""Routing: inbound device messages → registry, twin, metrics, events, inventory; desired → devices."""
