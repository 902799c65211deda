"""The gRPC face of the node agent: message conversion, the one error→status table, the servicer
and the server (unix socket, mutual-TLS TCP, health, reflection).

Only this package imports grpc; the service layer below it is plain Python.
"""
