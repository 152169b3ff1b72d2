"""The KRaft cluster id handed to Kafka's storage tool."""

import uuid

from stack.services import new_cluster_id


def test_cluster_id_never_starts_with_a_dash():
    # 0xF8 as the first byte encodes to '-' in URL-safe base64: the storage tool's parser
    # took such an id for an option and the format failed (a CI run did, 1 draw in 64).
    dash_first = uuid.UUID(bytes=bytes([0xF8]) + bytes(15))
    plain = uuid.UUID(bytes=bytes([0x10]) + bytes(15))
    draws = iter([dash_first, dash_first, plain])
    cluster_id = new_cluster_id(draw=lambda: next(draws))
    assert cluster_id == "EAAAAAAAAAAAAAAAAAAAAA"
    assert next(draws, None) is None  # both dash-first draws were refused


def test_cluster_id_is_22_url_safe_characters():
    for _ in range(500):
        cluster_id = new_cluster_id()
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")
        assert set(cluster_id) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
