"""Live performance of apps from a real Prometheus that scrapes the node agents and bridges.

- `scrape`: the scrape configuration for a set of /metrics endpoints (pure, validated);
- `prometheus`: the two adapters, one for the HTTP query API and one for a private Prometheus
  process (own data directory, loopback port, started and stopped explicitly);
- `performance`: per-app and per-component CPU, memory and the QoS metrics the description
  names, answering the REST API's PerformanceSource.
"""
