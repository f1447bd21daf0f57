"""One verdict per series: a tumour class when enough in-domain slices agree confidently, out of domain when
too few slices pass the picture checks, no tumour otherwise; its parameters from the model contract."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest

from brainscan.cli import main
from brainscan.engine.errors import ModelError
from brainscan.engine.model.contract import ModelContract
from brainscan.engine.results.record import FrameRecord
from brainscan.engine.results.rows import read_records
from brainscan.engine.results.series import SERIES_COLUMNS, summarize_series, verdict_lines, write_series_csv
from brainscan.engine.results.verdict import NO_VERDICT, OUT_OF_DOMAIN, VerdictRule, series_verdict
from tiny_models import FOUR_CLASSES, build_tiny_model, tiny_contract

UID = "1.2.826.0.1.3680043.2.1125.7"


def slice_(label: str, p: float, *, in_domain: bool | None = True, index: int = 0, uid: str = UID,
           classes: tuple[str, ...] = FOUR_CLASSES) -> FrameRecord:
    """A classified slice whose top class is ``label`` at probability ``p`` (the rest shared evenly)."""
    rest = (1.0 - p) / (len(classes) - 1)
    probabilities = {name: (p if name == label else rest) for name in classes}
    tumour = 1.0 - probabilities.get("notumor", 0.0) if "notumor" in classes else p
    return FrameRecord(Path(f"/s/IM{index}"), 0, "ok", label=label, confidence=p, tumour_probability=tumour,
                       probabilities=probabilities, series_uid=uid, series_index=index, in_domain=in_domain,
                       domain_reason="" if in_domain is not False else "blank picture")


def failed(index: int = 0) -> FrameRecord:
    return FrameRecord(Path(f"/s/bad{index}"), 0, "error", probabilities=dict.fromkeys(FOUR_CLASSES, math.nan),
                       series_uid=UID, series_index=index, error="cut short")


def series(*groups: tuple[int, str, float] | tuple[int, str, float, bool | None]) -> list[FrameRecord]:
    """Slices by groups of (how many, top class, probability[, in domain])."""
    records: list[FrameRecord] = []
    for count, label, p, *domain in groups:
        records += [slice_(label, p, in_domain=domain[0] if domain else True, index=len(records) + i)
                    for i in range(count)]
    return records


# -- the rule -----------------------------------------------------------------------------------------
def test_a_notumor_series_with_two_confident_tumour_slices_stays_notumor():
    verdict = series_verdict(series((20, "notumor", 0.95), (2, "glioma", 0.97)), FOUR_CLASSES)
    assert verdict.label == "notumor"
    assert (verdict.support, verdict.in_domain, verdict.slices) == (22, 22, 22)
    assert verdict.text == "notumor: 22 in-domain slices, no tumour class on 3 or more at p >= 0.90"


def test_three_agreeing_confident_slices_make_the_tumour_class():
    verdict = series_verdict(series((117, "notumor", 0.95), (3, "meningioma", 0.95)), FOUR_CLASSES)
    assert (verdict.label, verdict.support, verdict.in_domain, verdict.slices) == ("meningioma", 3, 120, 120)
    assert verdict.text == "meningioma: 3 of 120 in-domain slices at p >= 0.90"
    assert verdict.detail == "3 of 120 in-domain slices at p >= 0.90"


def test_a_slice_below_the_probability_does_not_agree():
    records = series((17, "notumor", 0.95), (2, "meningioma", 0.95), (1, "meningioma", 0.85))
    assert series_verdict(records, FOUR_CLASSES).label == "notumor"


def test_the_probability_is_judged_as_results_csv_writes_it():
    """0.9 held as float32 (0.89999998) is 0.900000 in results.csv: it agrees in memory too."""
    import numpy as np

    p = float(np.float32(0.9))
    assert p < 0.9
    assert series_verdict(series((3, "glioma", p)), FOUR_CLASSES).label == "glioma"


def test_slices_out_of_domain_do_not_count():
    records = series((16, "notumor", 0.95), (2, "meningioma", 0.95), (1, "meningioma", 0.99, False))
    verdict = series_verdict(records, FOUR_CLASSES)
    assert (verdict.label, verdict.in_domain, verdict.slices) == ("notumor", 18, 19)


def test_slices_not_judged_count_as_in_domain():
    """Results written before the picture checks have no in_domain: they are taken as in domain."""
    verdict = series_verdict(series((5, "notumor", 0.95, None), (3, "pituitary", 0.93, None)), FOUR_CLASSES)
    assert (verdict.label, verdict.support, verdict.in_domain) == ("pituitary", 3, 8)


def test_a_mostly_out_of_domain_series_is_out_of_domain():
    # 20 slices need ceil(0.25 * 20) = 5 in domain
    verdict = series_verdict(series((4, "glioma", 0.99), (16, "notumor", 0.95, False)), FOUR_CLASSES)
    assert (verdict.label, verdict.support, verdict.in_domain, verdict.slices) == (OUT_OF_DOMAIN, 0, 4, 20)
    assert verdict.text == "out_of_domain: 4 of 20 slices in domain (5 needed)"
    assert series_verdict(series((5, "glioma", 0.99), (15, "notumor", 0.95, False)), FOUR_CLASSES).label == "glioma"


def test_a_one_picture_series_gets_its_class_when_in_domain_and_confident():
    assert series_verdict([slice_("glioma", 0.95)], FOUR_CLASSES).label == "glioma"
    assert series_verdict([slice_("glioma", 0.95)], FOUR_CLASSES).text == "glioma: 1 of 1 in-domain slices at p >= 0.90"
    assert series_verdict([slice_("glioma", 0.95, in_domain=False)], FOUR_CLASSES).label == OUT_OF_DOMAIN
    assert series_verdict([slice_("glioma", 0.6)], FOUR_CLASSES).label == "notumor"
    assert series_verdict([slice_("notumor", 0.99)], FOUR_CLASSES).label == "notumor"


def test_a_short_series_needs_all_its_in_domain_slices_to_agree():
    assert series_verdict(series((2, "glioma", 0.95)), FOUR_CLASSES).label == "glioma"
    assert series_verdict(series((1, "glioma", 0.95), (1, "notumor", 0.95)), FOUR_CLASSES).label == "notumor"


def test_several_qualifying_classes_the_most_slices_win_then_the_higher_mean():
    more = series((4, "glioma", 0.91), (3, "meningioma", 0.99), (10, "notumor", 0.95))
    assert series_verdict(more, FOUR_CLASSES).label == "glioma"
    tie = series((3, "glioma", 0.95), (3, "meningioma", 0.97), (10, "notumor", 0.95))
    verdict = series_verdict(tie, FOUR_CLASSES)
    assert (verdict.label, verdict.support) == ("meningioma", 3)
    exact = series((3, "pituitary", 0.95), (3, "glioma", 0.95))
    assert series_verdict(exact, FOUR_CLASSES).label == "glioma"  # all equal: the model's class order


def test_failed_frames_are_ignored():
    records = [*series((3, "glioma", 0.95)), *(failed(10 + i) for i in range(20))]
    verdict = series_verdict(records, FOUR_CLASSES)
    assert (verdict.label, verdict.support, verdict.in_domain, verdict.slices) == ("glioma", 3, 3, 3)
    nothing = series_verdict([failed(1), failed(2)], FOUR_CLASSES)
    assert (nothing.label, nothing.slices) == (NO_VERDICT, 0)


def test_a_model_without_a_negative_class_gives_the_class_most_slices_show():
    classes = ("glioma", "meningioma", "pituitary")
    records = [slice_("glioma", 0.6, classes=classes, index=i) for i in range(5)]
    records += [slice_("pituitary", 0.95, classes=classes, index=5 + i) for i in range(2)]
    verdict = series_verdict(records, classes)
    assert (verdict.label, verdict.support) == ("glioma", 5)
    assert verdict.text == "glioma: top class of 5 of 7 in-domain slices (no class on 3 at p >= 0.90)"
    records += [slice_("pituitary", 0.95, classes=classes, index=7)]
    assert series_verdict(records, classes).label == "pituitary"  # three confident slices still decide


def test_the_rule_parameters_change_the_verdict():
    records = series((18, "notumor", 0.95), (2, "meningioma", 0.8))
    assert series_verdict(records, FOUR_CLASSES).label == "notumor"
    lenient = VerdictRule(min_agreeing_slices=2, min_probability=0.75)
    assert series_verdict(records, FOUR_CLASSES, lenient).label == "meningioma"
    strict = VerdictRule(min_in_domain_share=1.0)
    assert series_verdict([*records, slice_("notumor", 0.9, in_domain=False)], FOUR_CLASSES, strict).label == OUT_OF_DOMAIN


def test_the_rule_says_itself_in_one_sentence():
    text = VerdictRule().describe()
    assert text.count(". ") == 0 and text.endswith(".")
    assert "at least 3" in text and "p >= 0.90" in text and "25 %" in text
    assert "p >= 0.925" in VerdictRule(min_probability=0.925).describe()


# -- the model contract -------------------------------------------------------------------------------
def test_the_contract_carries_the_series_rule():
    contract = tiny_contract(series_rule={"min_agreeing_slices": 2, "min_probability": 0.8, "min_in_domain_share": 0.5})
    again = ModelContract.from_json(contract.to_json())
    assert VerdictRule.from_contract(again) == VerdictRule(2, 0.8, 0.5)
    assert VerdictRule.from_contract(tiny_contract()) == VerdictRule()  # absent: the defaults
    assert VerdictRule.from_contract(tiny_contract(series_rule={"min_probability": 1})) == VerdictRule(min_probability=1.0)


@pytest.mark.parametrize(("rule", "problem"), [
    ({"min_agreeing_slices": 3, "max_slices": 9}, "unknown key 'max_slices'"),
    ({"min_agreeing_slices": 0}, "min_agreeing_slices is 0"),
    ({"min_agreeing_slices": 2.5}, "min_agreeing_slices is 2.5"),
    ({"min_agreeing_slices": True}, "min_agreeing_slices is True"),
    ({"min_probability": "0.9"}, "min_probability is '0.9'"),
    ({"min_probability": 1.5}, "min_probability is 1.5"),
    ({"min_in_domain_share": -0.1}, "min_in_domain_share is -0.1"),
    ([3, 0.9, 0.25], "series_rule must be a JSON object"),
])
def test_the_contract_refuses_a_bad_series_rule(rule, problem):
    raw = json.loads(tiny_contract().to_json())
    raw["series_rule"] = rule
    with pytest.raises(ModelError, match="invalid model contract: .*" + problem.replace("(", r"\(")):
        ModelContract.from_json(json.dumps(raw))
    with pytest.raises(ValueError, match="invalid series verdict rule"):
        VerdictRule.from_mapping(rule)  # type: ignore[arg-type]


def test_a_rule_out_of_range_is_refused():
    with pytest.raises(ValueError, match="min_probability"):
        VerdictRule(min_probability=2.0)


# -- series.csv, the run's last lines -----------------------------------------------------------------
def test_series_csv_has_the_verdict_columns_and_the_most_suspicious_slice_is_in_domain(tmp_path):
    records = series((5, "notumor", 0.95), (3, "glioma", 0.93), (1, "glioma", 0.999, False))
    (entry,) = summarize_series(records, FOUR_CLASSES)
    assert entry.most_suspicious is records[5]  # the out-of-domain slice at 0.999 is not it
    assert (entry.in_domain_slices, entry.verdict.label, entry.verdict.support) == (8, "glioma", 3)
    assert entry.to_dict()["verdict_text"] == "glioma: 3 of 8 in-domain slices at p >= 0.90"
    write_series_csv(tmp_path / "series.csv", [entry])
    with open(tmp_path / "series.csv", newline="", encoding="utf-8") as handle:
        (row,) = list(csv.DictReader(handle))
    assert {"verdict", "verdict_support", "in_domain_slices"} <= set(SERIES_COLUMNS)
    assert (row["verdict"], row["verdict_support"], row["in_domain_slices"]) == ("glioma", "3", "8")


def test_the_run_ends_with_a_line_per_series_verdict_or_a_count_per_verdict():
    few = [summarize_series(series((4, "meningioma", 0.95)), FOUR_CLASSES)[0]]
    assert verdict_lines(few) == [f"series {UID}: meningioma (4 of 4 in-domain slices at p >= 0.90)"]
    single = summarize_series([slice_("glioma", 0.95, uid=f"1.{i}") for i in range(3)], FOUR_CLASSES)
    assert verdict_lines(single) == []  # one frame per series: each row says it already
    many = summarize_series(
        [slice_("notumor", 0.95, uid=f"1.{i}", index=j) for i in range(12) for j in range(2)]
        + [slice_("glioma", 0.95, uid="2.1", index=j) for j in range(3)], FOUR_CLASSES)
    assert verdict_lines(many) == ["series verdicts (13 series): 12 notumor, 1 glioma; each in series.csv"]


@pytest.fixture(scope="module")
def lenient_model(tmp_path_factory) -> Path:
    """A tiny model whose contract calls a series a tumour class on one slice at any probability."""
    rule = {"min_agreeing_slices": 1, "min_probability": 0.0, "min_in_domain_share": 0.25}
    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx", contract=tiny_contract(series_rule=rule))


def test_screen_writes_each_series_verdict_by_the_contracts_rule(sagittal_series_dir, lenient_model, tmp_path, capsys):
    study = tmp_path / "study"
    shutil.copytree(sagittal_series_dir, study / "series")
    out = tmp_path / "out"
    status = main(["screen", str(study), "--out", str(out), "--model", str(lenient_model), "--progress", "never"])
    assert status == 0
    with open(out / "series.csv", newline="", encoding="utf-8") as handle:
        (row,) = list(csv.DictReader(handle))
    rule = VerdictRule(min_agreeing_slices=1, min_probability=0.0)
    expected = series_verdict(read_records(out / "results.csv", FOUR_CLASSES), FOUR_CLASSES, rule)
    assert expected.slices > 1
    assert row["verdict"] == expected.label and int(row["verdict_support"]) == expected.support
    assert int(row["in_domain_slices"]) == expected.in_domain
    document = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert document["series_rule"]["min_agreeing_slices"] == 1 and document["series_rule"]["text"] == rule.describe()
    assert document["series"][0]["verdict"] == expected.label
    assert f"series {row['series_uid']}: {expected.label} ({expected.detail})" in capsys.readouterr().err


def test_with_a_false_call_rate_the_slices_needed_grow_with_the_series():
    rule = VerdictRule(false_call_rate=0.0087, false_series_rate=0.01)
    needed = {n: rule.agreeing_needed(n) for n in (1, 20, 192)}
    assert needed == {1: 1, 20: 3, 192: 6}
    # a 20-slice series with 3 confident meningioma slices is called; with 2 it is not
    assert series_verdict(series((17, "notumor", 0.99), (3, "meningioma", 0.95)), FOUR_CLASSES, rule).label == \
        "meningioma"
    assert series_verdict(series((18, "notumor", 0.99), (2, "meningioma", 0.95)), FOUR_CLASSES, rule).label == \
        "notumor"
    # the same 3 slices among 192 are not enough
    assert series_verdict(series((189, "notumor", 0.99), (3, "meningioma", 0.95)), FOUR_CLASSES, rule).label == \
        "notumor"
    assert "k growing with their number" in rule.describe()


def test_the_slices_needed_keep_a_normal_series_false_alarm_under_the_stated_rate():
    from scipy.stats import binom

    for n in (2, 7, 50, 300):
        for rate in (0.001, 0.01, 0.05):
            k = VerdictRule(false_call_rate=rate, false_series_rate=0.01).agreeing_needed(n)
            if k < n:  # capped at the series' length otherwise
                assert binom.sf(k - 1, n, rate) <= 0.01 < binom.sf(k - 2, n, rate)
