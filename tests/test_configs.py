"""Every shipped recipe config parses into its settings class; typos are caught by name."""

from pathlib import Path

import pytest

from audiomae.classify import FinetuneSettings
from audiomae.train.config import load_config
from audiomae.train.plc import PLCSettings
from audiomae.train.pretrain import PretrainSettings

CONFIGS = Path(__file__).resolve().parents[1] / "recipes" / "configs"
KINDS = {"pretrain": PretrainSettings, "plc": PLCSettings, "classify": FinetuneSettings}


@pytest.mark.parametrize(
    "path", sorted(p for kind in KINDS for p in (CONFIGS / kind).glob("*.yaml")), ids=lambda p: p.stem
)
def test_shipped_configs_parse(path):
    settings = KINDS[path.parent.name].from_dict(load_config(path))
    assert settings.train.steps > 0 and settings.train.batch_size > 0


def test_plc_settings_sections_and_errors():
    s = PLCSettings.from_dict({"data": "/clips", "masks": {"rate": [0.1, 0.2]}, "train": {"steps": 3}})
    assert s.data.train == "/clips" and s.masks.rate == (0.1, 0.2) and s.train.steps == 3
    assert s.masks.burst == PLCSettings().masks.burst  # untouched fields keep their defaults
    with pytest.raises(ValueError, match=r"unknown PLC fine-tuning settings: \['mask'\]"):
        PLCSettings.from_dict({"mask": {}})
    with pytest.raises(ValueError, match="unknown PLCMaskSettings fields"):
        PLCSettings.from_dict({"masks": {"rates": [0.1, 0.2]}})
