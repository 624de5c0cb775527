"""After deploy: sampled features, drift statistics, metrics, rollout gates."""

__all__: list[str] = []
