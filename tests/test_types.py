"""ctnet.types: the typed checkpoint metadata round-trips (unknown fields kept); a loaded model
describes its source."""
from __future__ import annotations
import json

from ctnet import api
from ctnet.checkpoint import save_checkpoint
from ctnet.types import CheckpointMeta
from trust_fixtures import SPEC, meta_dict


def test_typed_meta_round_trips_and_keeps_unknown_fields():
    meta = meta_dict(epoch=3, metrics={"acc1": 50.0, "fp32_bytes": 44_764_968, "est_bytes": {"8": 10}},
                 note="kept", train_config={"lr": 0.1, "dct_block_size": 16})
    typed = CheckpointMeta.from_json(json.dumps(meta))
    assert typed.model == SPEC and typed.image_size == 16 and typed.epoch == 3 and typed.other == {"note": "kept"}
    assert CheckpointMeta.from_json(typed.to_json()) == typed


def test_loaded_model_describes_its_source(tmp_path, state):
    path = save_checkpoint(tmp_path / "a.safetensors", state, {"model": SPEC.to_dict(), "image_size": 16})
    loaded = api.load_any(path)
    assert loaded.kind == "checkpoint" and loaded.path == path and loaded.num_classes == 10 and loaded.spec == SPEC
    assert loaded.image_size == 16 and not loaded.model.training and loaded.bundle is None and loaded.settings is None
