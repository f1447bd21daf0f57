"""Two-way binding of a widget to one field of an evented model (napari's Qt views over its models).

The widget shows the model's field, and an edit of the widget sets the field. Neither direction
needs ``blockSignals``: the model announces nothing when a field is set to the value it has, and a
widget edit that already shows the model's value is not passed on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, SignalInstance
from PySide6.QtWidgets import QComboBox

from brainscan.engine.viewer.evented import EventedModel, EventEmitter


def _same(value: Any) -> Any:
    return value


def follow(owner: QObject, emitter: EventEmitter, callback: Callable[..., object]) -> None:
    """Call ``callback`` at each of ``emitter``'s events while ``owner`` (a widget, an action) exists."""
    emitter.connect(callback)
    owner.destroyed.connect(lambda *_: emitter.disconnect(callback))


def bind_field(
    owner: QObject,
    model: EventedModel,
    name: str,
    edited: SignalInstance,
    read: Callable[[], Any],
    show: Callable[[Any], object],
    *,
    to_widget: Callable[[Any], Any] = _same,
    to_model: Callable[[Any], Any] = _same,
) -> None:
    """Show ``model.<name>`` in a widget and set it from the widget's edits.

    Parameters
    ----------
    owner:
        The widget (or action); the binding ends when it is destroyed.
    edited:
        The widget's signal that it changed (its arguments are ignored: ``read`` gives the value).
    read, show:
        Get and set the widget's value, in the widget's units (``None`` read: nothing chosen).
    to_widget, to_model:
        Convert between the model's and the widget's units (e.g. opacity 0.45 and slider 45).
    """

    def on_model(value: Any) -> None:
        show(to_widget(value))

    def on_edit(*_args: object) -> None:
        value = read()
        if value is not None and value != to_widget(getattr(model.value, name)):
            model.update(**{name: to_model(value)})

    follow(owner, model.events[name], on_model)
    show(to_widget(getattr(model.value, name)))
    edited.connect(on_edit)


def bind_check(owner: QObject, model: EventedModel, name: str) -> None:
    """A checkable button or action (``toggled``, ``isChecked``, ``setChecked``) bound to a bool field."""
    bind_field(owner, model, name, owner.toggled, owner.isChecked, owner.setChecked)  # type: ignore[attr-defined]


def bind_combo(combo: QComboBox, model: EventedModel, name: str, to_model: Callable[[Any], Any] = _same) -> None:
    """A combo box whose items' data are the field's values (an unknown value shows the first item)."""
    bind_field(combo, model, name, combo.currentIndexChanged, combo.currentData,
               lambda value: combo.setCurrentIndex(max(combo.findData(value), 0)), to_model=to_model)


def bind_percent(slider: QObject, model: EventedModel, name: str) -> None:
    """A 0-100 slider bound to a field in [0, 1]."""
    bind_field(slider, model, name, slider.valueChanged, slider.value, slider.setValue,  # type: ignore[attr-defined]
               to_widget=lambda value: round(value * 100), to_model=lambda value: value / 100.0)
