"""Stand-in for gradio (tests only): components record their keyword arguments and expose `.value`."""

from __future__ import annotations

from typing import Any

CREATED: list[Any] = []


class Component:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.value = kwargs.get("value")
        CREATED.append(self)


class Dropdown(Component):
    pass


class Slider(Component):
    pass


class Accordion(Component):
    def __enter__(self) -> Accordion:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __init__(self, label: str = "", **kwargs: Any) -> None:
        super().__init__(label=label, **kwargs)


def update(**kwargs: Any) -> dict[str, Any]:
    return {"__type__": "update", **kwargs}
