"""The Kubernetes object model shared by every tool: load, validate and default objects.

It imports nothing else of ours: the enforcer, the simulator and the harness all read their
input through it.
"""
