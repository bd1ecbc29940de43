"""Stand-in of `modules/options.py`: OptionInfo and Options with the WebUI's `set`/`add_option` behaviour."""

from __future__ import annotations

from typing import Any


class OptionInfo:
    def __init__(self, default: Any = None, label: str = "", component: Any = None, component_args: Any = None,
                 onchange: Any = None, section: Any = None, refresh: Any = None, comment_before: str = "",
                 comment_after: str = "", infotext: str | None = None, restrict_api: bool = False,
                 category_id: str | None = None) -> None:
        self.default = default
        self.label = label
        self.component = component
        self.component_args = component_args
        self.section = section
        self.infotext = infotext
        self.restrict_api = restrict_api
        self.category_id = category_id
        self.do_not_save = False


class Options:
    def __init__(self, data_labels: dict[str, OptionInfo]) -> None:
        object.__setattr__(self, "data_labels", dict(data_labels))
        object.__setattr__(self, "data", {k: v.default for k, v in data_labels.items()})

    def __getattr__(self, item: str) -> Any:
        if item in self.data:
            return self.data[item]
        if item in self.data_labels:
            return self.data_labels[item].default
        raise AttributeError(item)

    def set(self, key: str, value: Any, is_api: bool = False, run_callbacks: bool = True) -> bool:
        oldval = self.data.get(key, None)
        if oldval == value:
            return False
        option = self.data_labels[key]  # unknown keys raise KeyError, as in the WebUI
        if option.do_not_save or (is_api and option.restrict_api):
            return False
        self.data[key] = value
        return True

    def add_option(self, key: str, info: OptionInfo) -> None:
        self.data_labels[key] = info
        if key not in self.data and not info.do_not_save:
            self.data[key] = info.default
