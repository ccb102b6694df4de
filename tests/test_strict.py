"""ctnet.strict: every way a JSON text can fail is one JSONInvalid (reason, cause, a one-line
detail) — the checkpoint, manifest and rd-cache readers each word it as their own error."""
import pytest

from ctnet.strict import JSONInvalid, parse_json


@pytest.mark.parametrize("text, reason, cause", [
    ("{not json", "syntax", "JSONDecodeError"),
    (b"\xff\xfe{}", "syntax", "UnicodeDecodeError"),
    ('{"n": ' + "9" * 5000 + "}", "unusable", "ValueError"),  # Python's 4300-digit limit
    ("[" * 100_000, "nested", "RecursionError"),
])
def test_every_failure_is_one_invalid(text, reason, cause):
    with pytest.raises(JSONInvalid) as info:
        parse_json(text)
    assert (info.value.reason, info.value.cause) == (reason, cause)
    assert "\n" not in str(info.value) and len(info.value.detail) <= 120


def test_constants_are_refused_where_a_format_has_none():
    assert parse_json('{"x": NaN}')["x"] != parse_json('{"x": NaN}')["x"]  # NaN, allowed by default
    with pytest.raises(JSONInvalid) as info:
        parse_json(b'{"x": Infinity}', constants=False)
    assert info.value.reason == "syntax" and "Infinity is not a JSON number" in info.value.detail
    assert parse_json(b'{"a": [1, 2.5, "s", null, true]}', constants=False) == {"a": [1, 2.5, "s", None, True]}
