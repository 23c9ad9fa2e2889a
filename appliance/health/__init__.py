from appliance.health.monitor import HealthMonitor, HealthSnapshot, StageLatency

__all__ = ["HealthMonitor", "HealthSnapshot", "StageLatency"]
