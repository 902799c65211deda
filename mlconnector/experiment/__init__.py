"""The real workload the QoS dataset is measured on: a CPU-bound HTTP service (busybox httpd and a
CGI burning a fixed CPU budget per request) in a container under runc or gVisor (runsc), in a
cgroup whose CFS quota and cpuset a real node agent sets live, and an open-loop request generator
on the host reaching it over a veth into a network namespace of its own.

It runs from a source checkout only (like demo/ and bench/, which share its private containerd
and image with the test suite, tests/nodeagent/runtimes): the wheel does not ship it.

- `stats`: pure: percentiles, cgroup counter deltas, the dataset row.
- `schedule`: pure: the generator's arrival times.
- `loadgen`: the asyncio HTTP/1.0 open-loop client.
- `cgroupfs`, `netns`, `host`, `agent`: thin adapters (cgroup counters, ip netns, the private
  containerd and image from the repository's test support, the node agent process and its API).
- `testbed`: `Testbed`, the context manager tying them together.
- `grid`: `record_grid`, the dataset recorder (`python -m mlconnector.experiment record`).
"""
