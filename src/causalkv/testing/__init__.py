"""Testing utilities for causalkv (public API for integration tests and CI).

``causalkv.testing.netns`` is a real-network fault-injection harness (network
namespaces, a private bridge, nftables partitions, link impairment);
``causalkv.testing.netns_pytest`` wires it into pytest.
"""
