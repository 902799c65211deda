"""The node agent's domain: the apply engine, its journal, drift checking, events and devices.

Nothing here imports grpc or touches the host directly: mechanisms (nodeagent/mechanisms) do
the host I/O through adapters, the API layer (nodeagent/api) translates messages and errors.
"""
