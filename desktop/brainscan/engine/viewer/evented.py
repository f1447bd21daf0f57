"""Observable state in plain Python: one evented model per piece of viewer state (napari's ``EventedModel``).

An :class:`EventedModel` holds a frozen dataclass (the value, validated by the dataclass itself) and
announces every change: ``model.events.<field>`` with the field's new value, then
``model.events.changed`` with the whole new value. Setting a field to the value it already has
announces nothing, so a widget that shows the model and also edits it never loops. Qt widgets bind
to these events (:mod:`brainscan.gui.binding`); the engine itself never imports Qt.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

T = TypeVar("T")
Callback = Callable[..., object]


class EventEmitter:
    """Callbacks called, in the order they were connected, with what :meth:`emit` is given."""

    def __init__(self) -> None:
        self._callbacks: list[Callback] = []

    def connect(self, callback: Callback) -> Callback:
        self._callbacks.append(callback)
        return callback

    def disconnect(self, callback: Callback) -> None:
        """Forget ``callback`` (a callback never connected is ignored)."""
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    def emit(self, *args: object) -> None:
        for callback in list(self._callbacks):
            callback(*args)

    def __len__(self) -> int:
        return len(self._callbacks)


class Events:
    """The emitters of a model: ``changed`` and one per name, as attributes (``events.opacity``) or by name."""

    def __init__(self, names: Iterable[str]) -> None:
        self.changed = EventEmitter()
        self._names = tuple(names)
        for name in self._names:
            setattr(self, name, EventEmitter())

    def __getitem__(self, name: str) -> EventEmitter:
        if name != "changed" and name not in self._names:
            raise KeyError(f"no event {name!r}; the events are: changed, {', '.join(self._names)}")
        return getattr(self, name)


class EventedField:
    """A field of an :class:`EventedModel` read and written as an attribute (``model.opacity = 0.5``)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, model: EventedModel | None, owner: type | None = None) -> Any:
        if model is None:
            return self
        return getattr(model.value, self.name)

    def __set__(self, model: EventedModel, value: object) -> None:
        model.update(**{self.name: value})


class EventedModel(Generic[T]):
    """A frozen dataclass value that says when it changes.

    Parameters
    ----------
    value:
        The first value (a frozen dataclass instance: its own checks validate every change).
    extra_events:
        Names of further emitters a subclass fires itself (state that is not part of the value).
    """

    def __init__(self, value: T, extra_events: Iterable[str] = ()) -> None:
        if not dataclasses.is_dataclass(value) or isinstance(value, type):
            raise TypeError(f"an evented model holds a dataclass instance, not {value!r}")
        self._value = value
        self._announced = value
        self._announcing = False
        self._fields = tuple(f.name for f in dataclasses.fields(value))
        self.events = Events((*self._fields, *extra_events))

    @property
    def value(self) -> T:
        """The current value (immutable: pass it on freely, change the model with :meth:`update`)."""
        return self._value

    def update(self, **changes: object) -> bool:
        """Change some fields (validated by the dataclass); returns whether anything changed."""
        return self.set(dataclasses.replace(self._value, **changes))  # type: ignore[type-var]

    def set(self, value: T) -> bool:
        """Replace the whole value; announces each field that changed, then ``changed``.

        A change made by a listener while a change is announced is announced after it, so the
        last announcement is always the current value.
        """
        if value == self._value:
            return False
        self._value = value
        if self._announcing:
            return True
        self._announcing = True
        try:
            while self._announced != self._value:
                before, now = self._announced, self._value
                self._announced = now
                for name in self._fields:
                    if getattr(before, name) != getattr(now, name):
                        self.events[name].emit(getattr(now, name))
                self.events.changed.emit(now)
        finally:
            self._announcing = False
        return True
