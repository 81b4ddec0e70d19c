"""Kubernetes integration: each pod holding GPUs runs as a govd job, with the policy its annotation
names (governor.k8s.agent, the `govd-k8s` command). Needs the `kubernetes` extra (grpcio, protobuf)."""
