"""Head office's view of the fleet: node health state, alerts, metrics, the dashboard."""
