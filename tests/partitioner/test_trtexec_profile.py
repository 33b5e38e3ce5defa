"""trtexec --exportProfile reader on hand-made files in trtexec's layout, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.errors import TrtexecProfileError
from edge.partitioner.trtexec_profile import read_trtexec_profile


def write(tmp_path: Path, data: object, name: str = "profile.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_reads_count_and_layers_in_engine_order(tmp_path: Path) -> None:
    data = [
        {"count": 200},
        {"name": "{ForeignNode[conv1...relu4]}", "timeMs": 100.0, "averageMs": 0.5, "medianMs": 0.49, "percentage": 80.0},
        {"name": "Reformatting CopyNode for Input Tensor 0 to avgpool", "timeMs": 5, "averageMs": 0.025, "medianMs": 0.02, "percentage": 4},
        {"name": "avgpool", "timeMs": 20.0, "averageMs": 0.1, "medianMs": 0.1, "percentage": 16.0},
    ]
    profile = read_trtexec_profile(write(tmp_path, data))
    assert profile.count == 200
    assert [layer.name for layer in profile.layers] == [d["name"] for d in data[1:]]
    assert profile.layers[1].time_ms == 5.0 and profile.layers[1].median_ms == 0.02
    assert profile.total_ms == pytest.approx(0.625)


@pytest.mark.parametrize(
    "data, message",
    [
        ("[{\"count\": 1},", "not JSON"),
        ({"count": 1}, "expected a JSON list starting with"),
        ([{"name": "x"}], "expected a JSON list starting with"),
        ([{"count": 0}, {"name": "a", "timeMs": 1, "averageMs": 1, "medianMs": 1, "percentage": 1}], "'count' must be a positive integer"),
        ([{"count": 3}], "no layer entries"),
        ([{"count": 3}, {"name": "a", "timeMs": 1, "averageMs": 1, "percentage": 1}], "element 1: missing 'medianMs'"),
        ([{"count": 3}, {"name": "a", "timeMs": 1, "averageMs": "fast", "medianMs": 1, "percentage": 1}], "element 1 ('a'): 'averageMs' must be a non-negative number"),
        ([{"count": 3}, ["a"]], "element 1: expected an object, got list"),
    ],
)
def test_bad_files_name_the_element_and_field(tmp_path: Path, data: object, message: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(TrtexecProfileError, match="trtexec profile '.*profile.json'") as info:
        read_trtexec_profile(path)
    assert message in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TrtexecProfileError, match="does not exist"):
        read_trtexec_profile(tmp_path / "nope.json")
