"""Every Hydra tool refuses a top-level key its config does not have, before Hydra runs, with one line naming the
closest real key (Hydra itself would suggest ``+epoch=3``, which nothing then reads)."""
from __future__ import annotations

import pytest

from ghostdet.cli.common import config_keys, refuse_unknown_keys
from helpers import assert_one_line_error, run_tool

TYPOS = [  # (config, mistyped override, the key it should name)
    ("train", "epoch=3", "epochs"),
    ("train", "+epoch=3", "epochs"),  # following Hydra's advice is refused too
    ("train", "bacth=8", "batch"),
    ("eval", "weight=best.pt", "weights"),
    ("eval", "conf_thres=0.1", "conf"),
    ("benchmark", "model=[ghost_yolo]", "models"),
    ("benchmark", "++batch_size=[1]", "batch_sizes"),
    ("check_data", "imgsize=320", "imgsz"),
]


@pytest.mark.parametrize("config, override, closest", TYPOS)
def test_a_mistyped_key_is_one_line_naming_the_closest_key(config, override, closest, capsys):
    with pytest.raises(SystemExit) as exit_info:
        refuse_unknown_keys(config, [override])
    assert exit_info.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    key = override.lstrip("+").split("=")[0]
    assert len(lines) == 1 and lines[0].startswith(f"error: unknown key {key!r}"), lines
    assert lines[0].endswith(f"did you mean {closest}?")


def test_real_keys_groups_nested_keys_and_hydra_flags_pass():
    assert {"epochs", "imgsz", "model", "data", "optimizer", "hydra"} <= config_keys("train")
    assert {"weights", "data", "split"} <= config_keys("eval")
    refuse_unknown_keys("train", ["model=repghost_yolo", "data=voc", "data.root=/x", "model.backbone.width=0.5",
                                  "optimizer.lr=0.01", "epochs=3", "hydra.run.dir=/tmp/x", "+hydra.job.env_set.A=1",
                                  "~resume", "--cfg", "job", "-m"])
    refuse_unknown_keys("eval", ["weights=best.pt", "data=coco128", "+data.names=[a]", "batch=2"])
    refuse_unknown_keys("train", ["whatever=1", "--config-name", "other"])  # another config: not ours to judge


def test_no_close_key_lists_the_keys(capsys):
    with pytest.raises(SystemExit):
        refuse_unknown_keys("check_data", ["zzz=1"])
    line = capsys.readouterr().err.strip()
    assert "unknown key 'zzz'" in line and "the keys are:" in line and "imgsz" in line


def test_train_tool_refuses_epoch_before_creating_anything(tmp_path):
    proc = run_tool("train.py", "epoch=3", cwd=tmp_path)
    assert_one_line_error(proc, "unknown key 'epoch'", "did you mean epochs?")
    assert list(tmp_path.iterdir()) == []  # no run dir, no generated data
