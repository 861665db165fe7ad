"""The front-coded key lists of feed entries (``pkeys``), read exactly as the Rust writer
writes them (the same vectors as shared/store/src/feed/key_list.rs's tests)."""

import pytest

from pantheon_client.feed import decode_prefixed


def test_front_coded_keys_read_back_in_order() -> None:
    assert decode_prefixed("0:11:tenant-001010:1:110:1:2") == [
        "tenant-0010",
        "tenant-0011",
        "tenant-0012",
    ]
    assert decode_prefixed("") == []


def test_lengths_count_bytes_and_suffixes_keep_whole_characters() -> None:
    # "aè-longer-key" then "aé-longer-key": they share "a" and the first byte of è/é,
    # but the writer cuts on a character boundary, so the second shares 1 byte.
    line = "0:14:aè-longer-key1:13:é-longer-key"
    assert decode_prefixed(line) == ["aè-longer-key", "aé-longer-key"]


@pytest.mark.parametrize(
    "bad",
    ["x", "1", "1:", "0:5:abc", "3:1:a", "0:1:a5:1:b", "0:0:", "0::a", "0:18446744073709551615:a"],
)
def test_damaged_lists_raise_value_error(bad: str) -> None:
    with pytest.raises(ValueError):
        decode_prefixed(bad)
