"""Models that must be refused: altered weights, truncated files; and the checksum's own properties."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from brainscan.cli import main
from brainscan.engine.contract import METADATA_KEY
from brainscan.engine.errors import ModelError
from brainscan.engine.inference import Classifier
from brainscan.engine.integrity import CHECKSUM_KEY, UNVERIFIED, VERIFIED, stamp_contract, weights_sha256
from tiny_models import build_tiny_model, tiny_contract

REPO = Path(__file__).resolve().parents[2]
STAMP = REPO / "installer" / "stamp_weights_checksum.py"


def stamped_model(path: Path, **kwargs) -> Path:
    build_tiny_model(path, **kwargs)
    model = onnx.load(str(path))
    stamp_contract(model)
    onnx.save(model, str(path))
    return path


def contract_json(path: Path) -> dict:
    model = onnx.load(str(path))
    return json.loads({p.key: p.value for p in model.metadata_props}[METADATA_KEY])


def alter_one_weight(source: Path, target: Path) -> Path:
    model = onnx.load(str(source))
    tensor = next(t for t in model.graph.initializer if t.name == "fc_b")
    values = numpy_helper.to_array(tensor).copy()
    values[0] += 0.25
    tensor.CopyFrom(numpy_helper.from_array(values, "fc_b"))
    onnx.save(model, str(target))
    return target


def test_model_with_a_matching_checksum_is_verified(tmp_path):
    classifier = Classifier(stamped_model(tmp_path / "m.onnx"), device="cpu")
    assert classifier.integrity == VERIFIED
    assert classifier.model_card()["integrity"] == VERIFIED


def test_model_without_a_checksum_is_accepted_as_unverified(tmp_path):
    classifier = Classifier(build_tiny_model(tmp_path / "m.onnx"), device="cpu")
    assert classifier.integrity == UNVERIFIED


def test_model_whose_weights_were_altered_is_refused_naming_the_file(tmp_path):
    tampered = alter_one_weight(stamped_model(tmp_path / "m.onnx"), tmp_path / "tampered.onnx")
    with pytest.raises(ModelError, match="weights do not match the checksum") as caught:
        Classifier(tampered, device="cpu")
    assert str(tampered) in str(caught.value) and "re-download or re-export" in str(caught.value)


def test_cli_refuses_a_tampered_model_with_one_line_and_exit_two(tmp_path, real_jpgs, capsys):
    tampered = alter_one_weight(stamped_model(tmp_path / "m.onnx"), tmp_path / "tampered.onnx")
    status = main(["screen", str(real_jpgs[0]), "--out", str(tmp_path / "out"), "--model", str(tampered)])
    err = capsys.readouterr().err
    assert status == 2
    assert "weights do not match the checksum" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "results.csv").exists()


def test_truncated_stamped_model_is_refused(tmp_path):
    data = stamped_model(tmp_path / "m.onnx").read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="cut.onnx"):
        Classifier(cut, device="cpu")


def test_checksum_ignores_serialisation_and_metadata_but_not_weights(tmp_path):
    path = build_tiny_model(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    before = weights_sha256(model)
    # the same values held in float_data instead of raw_data
    for tensor in model.graph.initializer:
        values = numpy_helper.to_array(tensor)
        tensor.ClearField("raw_data")
        tensor.float_data[:] = values.ravel().tolist()
    helper_props = {p.key: p.value for p in model.metadata_props}
    helper_props["note"] = "metadata does not count"
    onnx.helper.set_model_props(model, helper_props)
    assert weights_sha256(model) == before == weights_sha256(path)
    other = build_tiny_model(tmp_path / "other.onnx", seed=1)
    assert weights_sha256(other) != before


def test_checksum_depends_on_names_and_shapes(tmp_path):
    model = onnx.load(str(build_tiny_model(tmp_path / "m.onnx")))
    before = weights_sha256(model)
    tensor = next(t for t in model.graph.initializer if t.name == "conv_b")
    tensor.name = "conv_b2"
    assert weights_sha256(model) != before
    tensor.name = "conv_b"
    values = numpy_helper.to_array(tensor)
    tensor.CopyFrom(numpy_helper.from_array(values.reshape(1, -1), "conv_b"))
    assert weights_sha256(model) != before


def test_stamp_keeps_the_contract_and_other_metadata(tmp_path):
    path = build_tiny_model(tmp_path / "m.onnx", tiny_contract(task="binary", classes=("no", "yes")))
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, "other": "kept"})
    checksum = stamp_contract(model)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["other"] == "kept"
    recorded = json.loads(props[METADATA_KEY])
    assert recorded[CHECKSUM_KEY] == checksum and recorded["classes"] == ["no", "yes"]


def test_stamp_script_stamps_a_copy_and_verifies_it(tmp_path):
    source = build_tiny_model(tmp_path / "m.onnx")
    target = tmp_path / "stamped.onnx"
    done = subprocess.run([sys.executable, str(STAMP), str(source), "--out", str(target)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "verified" in done.stdout
    assert CHECKSUM_KEY not in contract_json(source)  # the source is left alone
    assert contract_json(target)[CHECKSUM_KEY] == weights_sha256(source)
    assert Classifier(target, device="cpu").integrity == VERIFIED
    probabilities = [Classifier(p, device="cpu").predict([np.full((64, 64, 3), 90, np.uint8)])[0].probabilities
                     for p in (source, target)]
    np.testing.assert_array_equal(*probabilities)


def test_stamp_script_refuses_a_model_without_contract(tmp_path):
    source = build_tiny_model(tmp_path / "m.onnx", with_contract=False)
    done = subprocess.run([sys.executable, str(STAMP), str(source), "--out", str(tmp_path / "s.onnx")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no brainscan contract" in done.stderr
    assert "Traceback" not in done.stderr


def test_binary_model_writes_its_own_columns_and_cannot_resume_a_4class_folder(tmp_path, real_jpgs, capsys):
    binary = build_tiny_model(tmp_path / "binary.onnx", tiny_contract(task="binary", classes=("no", "yes")), seed=2)
    four = build_tiny_model(tmp_path / "four.onnx")
    out = tmp_path / "out"
    assert main(["screen", str(real_jpgs[0]), "--out", str(out), "--model", str(binary), "--progress", "never"]) == 0
    header = (out / "results.csv").read_text(encoding="utf-8").splitlines()[0].split(",")
    assert "p_no" in header and "p_yes" in header and "p_glioma" not in header
    assert main(["model", "--model", str(binary)]) == 0
    assert '"task": "binary"' in capsys.readouterr().out
    # the same folder with a 4-class model: refused, the binary results untouched
    before = (out / "results.csv").read_bytes()
    assert main(["screen", str(real_jpgs[1]), "--out", str(out), "--model", str(four), "--progress", "never"]) == 2
    assert "use a new --out folder" in capsys.readouterr().err
    assert (out / "results.csv").read_bytes() == before
