"""Node telemetry: psutil and HostFS collectors sampled live into a cache, agent metrics, /metrics.

The interface the agent's core relies on is exactly what this module exports.
"""

from nodeagent.telemetry.agent import AgentMetrics
from nodeagent.telemetry.service import Telemetry
from nodeagent.telemetry.settings import DEFAULT_SETTINGS, CollectorSettings

__all__ = ["DEFAULT_SETTINGS", "AgentMetrics", "CollectorSettings", "Telemetry"]
