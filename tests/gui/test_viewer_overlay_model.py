"""The overlay's one evented model, without Qt: what it announces, and when it stays quiet."""

from __future__ import annotations

import pytest

from brainscan.engine.viewer.overlay import PREDICTED, OverlayModel, OverlaySettings


def _record(model: OverlayModel, *names: str) -> list[tuple[str, object]]:
    seen: list[tuple[str, object]] = []
    for name in names:
        model.events[name].connect(lambda value, name=name: seen.append((name, value)))
    return seen


def test_setting_a_field_announces_its_new_value_once_then_the_whole_settings_once():
    model = OverlayModel()
    seen = _record(model, "opacity", "changed", "method")
    model.opacity = 0.6
    assert seen == [("opacity", 0.6), ("changed", model.value)]
    assert model.opacity == 0.6 and model.value == OverlaySettings(opacity=0.6)


def test_setting_the_value_it_already_has_announces_nothing():
    model = OverlayModel(OverlaySettings(colormap="viridis"))
    seen = _record(model, "colormap", "changed")
    model.colormap = "viridis"
    assert not model.update(visible=True, threshold=0.2)
    assert not model.set(OverlaySettings(colormap="viridis"))
    assert seen == []


def test_a_new_settings_value_announces_only_the_fields_that_differ():
    model = OverlayModel()
    seen = _record(model, "visible", "target", "method", "opacity", "colormap", "threshold", "changed")
    assert model.set(OverlaySettings(method="layercam", target=2))
    assert seen == [("target", 2), ("method", "layercam"), ("changed", model.value)]


def test_a_bad_value_is_refused_and_nothing_is_announced():
    model = OverlayModel()
    seen = _record(model, "method", "changed")
    with pytest.raises(ValueError, match="unknown CAM method"):
        model.method = "nonsense"
    assert model.method == "gradcam" and seen == []


def test_a_change_made_by_a_listener_is_announced_after_the_one_that_caused_it():
    model = OverlayModel()
    model.events.target.connect(lambda target: setattr(model, "target", PREDICTED) if target > 3 else None)
    seen = _record(model, "target", "changed")
    model.target = 7
    assert model.target == PREDICTED
    assert [name for name, _ in seen] == ["target", "changed", "target", "changed"]
    assert seen[-1] == ("changed", model.value)


def test_holding_space_hides_the_drawing_without_touching_the_settings():
    model = OverlayModel()
    seen = _record(model, "compare_hidden", "visible", "changed")
    model.compare_hidden = True
    model.compare_hidden = True
    assert seen == [("compare_hidden", True)]
    assert not model.drawn and model.visible and model.value == OverlaySettings()
    model.compare_hidden = False
    assert model.drawn


def test_a_disconnected_listener_hears_nothing_more():
    model = OverlayModel()
    heard = []
    model.events.visible.connect(heard.append)
    model.visible = False
    model.events.visible.disconnect(heard.append)
    model.visible = True
    assert heard == [False]
