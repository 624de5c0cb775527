"""Kubernetes manifests (kustomize) under `deploy/kubernetes/`, and `python -m deploy`, which
writes the parts made from `monitor/`: the PrometheusRule and the Grafana dashboard."""
