"""Models that must be refused: altered weights, no checksum (unless allowed), truncated files; the
warning an allowed unverified model leaves on stderr and on every report page; and the checksum's own
properties."""

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
from brainscan.engine.errors import ModelError, UnverifiedModelError
from brainscan.engine.model import integrity
from brainscan.engine.model.contract import METADATA_KEY
from brainscan.engine.model.inference import Classifier
from brainscan.engine.model.integrity import (
    CHECKSUM_KEY,
    UNVERIFIED,
    UNVERIFIED_WARNING,
    VERIFIED,
    stamp_contract,
    weights_sha256,
)
from brainscan.engine.reports.content import build_content
from brainscan.engine.reports.html_report import render_html
from brainscan.engine.reports.pdf_report import render_pdf
from brainscan.engine.results.record import FrameRecord
from tiny_models import FOUR_CLASSES, build_tiny_model, tiny_contract

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


def remove_checksum(source: Path, target: Path) -> Path:
    """The model with ``weights_sha256`` deleted from its contract (the rest of the contract kept)."""
    model = onnx.load(str(source))
    for entry in model.metadata_props:
        if entry.key == METADATA_KEY:
            contract = json.loads(entry.value)
            del contract[CHECKSUM_KEY]
            entry.value = json.dumps(contract)
    onnx.save(model, str(target))
    return target


def test_model_without_a_checksum_is_refused_naming_the_file_and_the_ways_out(tmp_path):
    unverified = build_tiny_model(tmp_path / "m.onnx", stamp=False)
    with pytest.raises(UnverifiedModelError) as caught:
        Classifier(unverified, device="cpu")
    message = str(caught.value)
    assert isinstance(caught.value, ModelError) and "\n" not in message
    assert message.startswith(f"{unverified}: its contract records no weights checksum")
    for fix in ("python -m trainer export", "installer/stamp_weights_checksum.py", "--allow-unverified-model"):
        assert fix in message


def test_refusing_a_model_without_a_checksum_computes_no_checksum(tmp_path, monkeypatch):
    def no_hashing(model):
        raise AssertionError("the refusal must not hash the weights")

    monkeypatch.setattr(integrity, "weights_sha256", no_hashing)
    with pytest.raises(UnverifiedModelError):
        Classifier(build_tiny_model(tmp_path / "m.onnx", stamp=False), device="cpu")


def test_model_without_a_checksum_opens_as_unverified_only_when_allowed(tmp_path):
    classifier = Classifier(build_tiny_model(tmp_path / "m.onnx", stamp=False), device="cpu", allow_unverified=True)
    assert classifier.integrity == UNVERIFIED
    assert classifier.model_card()["integrity"] == UNVERIFIED


def test_tiny_test_models_are_stamped_like_the_trainers_exports(tmp_path):
    assert Classifier(build_tiny_model(tmp_path / "m.onnx"), device="cpu").integrity == VERIFIED


def test_model_with_changed_weights_and_its_checksum_removed_is_refused(tmp_path):
    tampered = alter_one_weight(stamped_model(tmp_path / "m.onnx"), tmp_path / "tampered.onnx")
    stripped = remove_checksum(tampered, tmp_path / "stripped.onnx")
    assert CHECKSUM_KEY not in contract_json(stripped)
    with pytest.raises(UnverifiedModelError, match="records no weights checksum"):
        Classifier(stripped, device="cpu")


def test_cli_refuses_a_model_with_changed_weights_and_no_checksum_in_one_line_and_exit_two(tmp_path, real_jpgs):
    tampered = alter_one_weight(stamped_model(tmp_path / "m.onnx"), tmp_path / "tampered.onnx")
    stripped = remove_checksum(tampered, tmp_path / "stripped.onnx")
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "brainscan.cli", "screen", str(real_jpgs[0]), "--out", str(out), "--model", str(stripped),
         "--device", "cpu", "--progress", "never"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("brainscan: error: ") and str(stripped) in lines[0]
    assert "records no weights checksum" in lines[0] and "Traceback" not in done.stderr
    assert not (out / "results.csv").exists()


@pytest.mark.parametrize("command", [["screen", "IMAGE", "--out", "OUT"], ["model"], ["self-test", "--device", "cpu"]])
def test_cli_commands_refuse_an_unverified_model_in_one_line_and_exit_two(tmp_path, real_jpgs, capsys, command):
    unverified = build_tiny_model(tmp_path / "m.onnx", stamp=False)
    argv = [{"IMAGE": str(real_jpgs[0]), "OUT": str(tmp_path / "out")}.get(a, a) for a in command]
    assert main([*argv, "--model", str(unverified)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("brainscan: error: ") and "records no weights checksum" in lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
    assert not (tmp_path / "out" / "results.csv").exists()


def test_cli_screens_an_allowed_unverified_model_saying_so_on_stderr_and_every_report_page(tmp_path, real_jpgs,
                                                                                             capsys):
    pypdf = pytest.importorskip("pypdf")
    unverified = build_tiny_model(tmp_path / "m.onnx", stamp=False)
    out = tmp_path / "out"
    status = main(["screen", *map(str, real_jpgs[:2]), "--out", str(out), "--model", str(unverified), "--device", "cpu",
                   "--progress", "never", "--report", "pdf,html", "--allow-unverified-model"])
    err = capsys.readouterr().err
    assert status == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("brainscan: warning: ")]
    assert len(warnings) == 1 and UNVERIFIED_WARNING in warnings[0] and str(unverified) in warnings[0]
    assert err.splitlines()[0] == warnings[0]  # said before screening
    pages = [page.extract_text() for page in pypdf.PdfReader(out / "report.pdf").pages]
    assert pages and all(UNVERIFIED_WARNING in text for text in pages)
    assert f"Integrity {UNVERIFIED}" in " ".join(" ".join(text.split()) for text in pages)
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.count(UNVERIFIED_WARNING) == 2  # in the top notice (fixed in print) and the bottom one


def test_cli_model_card_of_an_allowed_unverified_model_says_unverified(tmp_path, capsys):
    unverified = build_tiny_model(tmp_path / "m.onnx", stamp=False)
    assert main(["model", "--model", str(unverified), "--allow-unverified-model"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["integrity"] == UNVERIFIED
    assert len(captured.err.splitlines()) == 1 and UNVERIFIED_WARNING in captured.err


def _report_content(tmp_path: Path, integrity_value: str, frames: int = 150):
    """A report of ``frames`` screened rows (enough for several PDF pages) from a run with this integrity."""
    records = [FrameRecord(Path(f"/data/slice-{i:03d}.png"), 0, "ok", label="glioma", confidence=0.9,
                           tumour_probability=0.9, probabilities=dict.fromkeys(FOUR_CLASSES, 0.25)) for i in range(frames)]
    run = {"application": "brainscan test", "model": {"name": "tiny", "classes": list(FOUR_CLASSES),
                                                      "integrity": integrity_value}}
    return build_content(tmp_path, records, run, FOUR_CLASSES)


def test_every_pdf_page_and_the_html_print_header_of_an_unverified_run_carry_the_warning(tmp_path):
    import io

    import pypdf

    content = _report_content(tmp_path, UNVERIFIED)
    pages = [page.extract_text() for page in pypdf.PdfReader(io.BytesIO(render_pdf(content))).pages]
    assert len(pages) >= 3
    assert all(UNVERIFIED_WARNING in text for text in pages)
    html = render_html(content)
    top = html.split("<div class='notice top'>", 1)[1].split("</div>", 1)[0]
    assert UNVERIFIED_WARNING in top and "<body class=unverified-model>" in html
    assert "<tr><th>Integrity</th><td>unverified (no checksum in contract)</td></tr>" in html


def test_reports_of_a_verified_run_carry_no_warning(tmp_path):
    import io

    import pypdf

    content = _report_content(tmp_path, VERIFIED, frames=3)
    text = " ".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(render_pdf(content))).pages)
    assert "UNVERIFIED" not in text and "Integrity verified" in " ".join(text.split())
    assert "UNVERIFIED" not in render_html(content)


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
    source = build_tiny_model(tmp_path / "m.onnx", stamp=False)
    target = tmp_path / "stamped.onnx"
    done = subprocess.run([sys.executable, str(STAMP), str(source), "--out", str(target)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "verified" in done.stdout
    assert CHECKSUM_KEY not in contract_json(source)  # the source is left alone
    assert contract_json(target)[CHECKSUM_KEY] == weights_sha256(source)
    assert Classifier(target, device="cpu").integrity == VERIFIED
    probabilities = [Classifier(p, device="cpu", allow_unverified=True).predict([np.full((64, 64, 3), 90, np.uint8)])[0]
                     .probabilities for p in (source, target)]
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


# -- files verified before ---------------------------------------------------------------------------
def test_a_file_verified_once_is_not_parsed_again(tmp_path, monkeypatch):
    from brainscan.engine.model import integrity

    monkeypatch.setenv("BRAINSCAN_CACHE", str(tmp_path / "cache"))
    model = stamped_model(tmp_path / "m.onnx")
    assert Classifier(model, device="cpu").integrity == VERIFIED  # parsed and hashed, then remembered

    def no_parse(path):
        raise AssertionError("the weights were parsed again")

    monkeypatch.setattr(integrity, "weights_sha256", no_parse)
    assert Classifier(model, device="cpu").integrity == VERIFIED


def test_a_remembered_file_whose_bytes_changed_is_verified_again_and_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINSCAN_CACHE", str(tmp_path / "cache"))
    model = stamped_model(tmp_path / "m.onnx")
    assert Classifier(model, device="cpu").integrity == VERIFIED
    alter_one_weight(model, model)  # same path, other bytes, checksum key kept
    with pytest.raises(ModelError, match="do not match the checksum"):
        Classifier(model, device="cpu")


def test_a_damaged_or_foreign_cache_is_never_trusted(tmp_path, monkeypatch):
    from brainscan.engine.model import integrity

    cache = tmp_path / "cache"
    monkeypatch.setenv("BRAINSCAN_CACHE", str(cache))
    model = stamped_model(tmp_path / "m.onnx")
    altered = alter_one_weight(model, tmp_path / "altered.onnx")
    cache.mkdir()
    # a cache that claims the altered file was verified against its (now wrong) recorded checksum
    (cache / integrity.VERIFIED_CACHE).write_text(json.dumps({integrity.file_sha256(altered): "0" * 64}))
    with pytest.raises(ModelError, match="do not match the checksum"):
        Classifier(altered, device="cpu")
    (cache / integrity.VERIFIED_CACHE).write_text("{not json")
    assert Classifier(model, device="cpu").integrity == VERIFIED
