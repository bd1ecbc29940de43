"""Stand-in of `modules/infotext_utils.py`: the parameter regex, quoting, parsing and the paste conversion."""

from __future__ import annotations

import json
import re
from typing import Any

from modules import script_callbacks

re_param_code = r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)'
re_param = re.compile(re_param_code)
re_imagesize = re.compile(r"^(\d+)x(\d+)$")


def quote(text: Any) -> Any:
    if "," not in str(text) and "\n" not in str(text) and ":" not in str(text):
        return text
    return json.dumps(text, ensure_ascii=False)


def unquote(text: str) -> str:
    if len(text) == 0 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return json.loads(text)
    except Exception:
        return text


def parse_generation_parameters(x: str) -> dict[str, Any]:
    """Prompt, negative prompt and the last line's `key: value` pairs, with the WebUI's defaults for missing
    'Schedule type' (the other defaults of the WebUI are left out)."""
    res: dict[str, Any] = {}
    prompt, negative_prompt, done_with_prompt = "", "", False
    *lines, lastline = x.strip().split("\n")
    if len(re_param.findall(lastline)) < 3:
        lines.append(lastline)
        lastline = ""
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            done_with_prompt = True
            line = line[16:].strip()
        if done_with_prompt:
            negative_prompt += ("" if negative_prompt == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line
    res["Prompt"] = prompt
    res["Negative prompt"] = negative_prompt
    for k, v in re_param.findall(lastline):
        if v and v[0] == '"' and v[-1] == '"':
            v = unquote(v)
        m = re_imagesize.match(v)
        if m is not None:
            res[f"{k}-1"] = m.group(1)
            res[f"{k}-2"] = m.group(2)
        else:
            res[k] = v
    if "Schedule type" not in res:
        res["Schedule type"] = "Automatic"
    return res


def paste(prompt: str, paste_fields: list[tuple[Any, Any]]) -> list[Any]:
    """What `connect_paste`'s paste_func returns for each field: an update dict, or {} for "no change"."""
    params = parse_generation_parameters(prompt)
    script_callbacks.infotext_pasted_callback(prompt, params)
    res: list[Any] = []
    for output, key in paste_fields:
        v = key(params) if callable(key) else params.get(key, None)
        if v is None:
            res.append({})
            continue
        try:
            valtype = type(output.value)
            if valtype is bool and v == "False":
                val: Any = False
            elif valtype is int:
                val = float(v)
            else:
                val = valtype(v)
            res.append({"value": val})
        except Exception:
            res.append({})
    return res
