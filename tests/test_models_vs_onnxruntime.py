"""Whole models built in the tests (CNN with residual blocks, transformer encoder, LSTM) vs onnxruntime.

The build runs the full default pipeline (optimizer included), so this checks import, every
pass and the CPU kernels together against an independent runtime, within 1e-4 relative.
"""

from __future__ import annotations

import pytest

import edge
from tests import models
from tests.conftest import assert_close, ort_run

MODELS = {
    "resnet_block_cnn": lambda: models.resnet_block_cnn(batch=2),
    "mobile_cnn": lambda: models.mobile_cnn(batch=2),
    "transformer_encoder": models.transformer_encoder,
    "lstm": models.lstm_model,
}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("optimize", [False, True], ids=["plain", "optimized"])
def test_model_matches_onnxruntime(name: str, optimize: bool) -> None:
    model = MODELS[name]()
    feeds = models.random_feeds(model, seed=5)
    expected = ort_run(model, feeds)
    engine = edge.build(model.SerializeToString(), edge.BuilderConfig(optimize=optimize))
    outputs = engine.create_context().run(feeds)
    assert [s.name for s in engine.outputs] == [o.name for o in model.graph.output]
    for spec, reference in zip(engine.outputs, expected):
        assert_close(outputs[spec.name], reference, rtol=1e-4, atol=1e-5, what=f"{name}:{spec.name}")
