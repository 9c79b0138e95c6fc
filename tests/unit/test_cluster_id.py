"""Cluster ids for the local broker's storage."""

from __future__ import annotations

import base64

from gateway_analytics.shared.local_kafka import new_cluster_id


def test_cluster_ids_never_look_like_an_option() -> None:
    """Thousands of draws: none begins with ``-``, each encodes 16 bytes."""
    cluster_ids = [new_cluster_id() for _ in range(5_000)]

    assert not [cluster_id for cluster_id in cluster_ids if cluster_id.startswith("-")]
    for cluster_id in cluster_ids:
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
    assert len(set(cluster_ids)) == len(cluster_ids)
