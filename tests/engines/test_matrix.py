"""Tests of the conv engine matrix: the shipped file, the validation messages, the shape maths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_trtctx.engines.matrix import (
    DTYPES,
    SCHEMA_VERSION,
    ConvSpec,
    default_matrix_path,
    load_matrix,
    select,
)
from pytest_trtctx.errors import ConfigError, MatrixError

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = default_matrix_path(ROOT)

MISSING = object()  # an override that drops the field from the entry

BASE_ENTRY: dict[str, object] = {
    "name": "good",
    "batch": 1,
    "in_channels": 16,
    "out_channels": 32,
    "height": 17,
    "width": 19,
    "kernel": 3,
    "stride": 1,
    "padding": 1,
    "dilation": 1,
    "groups": 1,
    "dtype": "float32",
}


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return repr(value)


def _entry(**fields: object) -> str:
    data = {**BASE_ENTRY, **fields}
    lines = ["[[conv]]"]
    lines += [
        f"{key} = {_toml_value(value)}" for key, value in data.items() if value is not MISSING
    ]
    return "\n".join(lines) + "\n"


def _write(tmp_path: Path, *entries: str, head: str = f"schema = {SCHEMA_VERSION}\n") -> Path:
    path = tmp_path / "conv_matrix.toml"
    path.write_text(head + "\n" + "\n".join(entries), encoding="utf-8")
    return path


def _load_error(path: Path) -> str:
    with pytest.raises(MatrixError) as info:
        load_matrix(path)
    return str(info.value)


@pytest.fixture(autouse=True)
def _neutral_cwd(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from a directory that holds no test file, so that messages show paths unabridged.

    ``load_matrix`` shows a path below the working directory relative to it; without this a run
    with ``--basetemp`` inside the checkout would see other paths than the tests expect.
    """
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture(scope="module")
def shipped() -> list[ConvSpec]:
    return load_matrix(SHIPPED)


# --------------------------------------------------------------------------------------------------
# The shipped matrix
# --------------------------------------------------------------------------------------------------


def test_default_matrix_path(tmp_path: Path) -> None:
    """The rootdir's own matrix where it has one, else the one that ships in the package."""
    from pytest_trtctx.suite import MATRIX

    assert default_matrix_path(tmp_path) == MATRIX and MATRIX.is_file()
    own = tmp_path / "engines" / "conv_matrix.toml"
    own.parent.mkdir()
    own.write_text("schema = 1\n")
    assert default_matrix_path(tmp_path) == own


def test_shipped_matrix_loads(shipped: list[ConvSpec]) -> None:
    assert len(shipped) >= 24
    assert len({spec.name for spec in shipped}) == len(shipped)


def test_shipped_matrix_covers_the_required_values(shipped: list[ConvSpec]) -> None:
    kernels = {k for spec in shipped for k in spec.kernel}
    strides = {s for spec in shipped for s in spec.stride}
    dilations = {d for spec in shipped for d in spec.dilation}
    assert {1, 3, 5, 7} <= kernels
    assert {1, 2} <= strides
    assert {1, 2} <= dilations
    assert any(spec.groups == 1 for spec in shipped)
    assert any(spec.depthwise for spec in shipped)
    assert any(1 < spec.groups < spec.in_channels for spec in shipped), "no grouped conv"
    assert {spec.dtype for spec in shipped} == set(DTYPES)
    for dtype in DTYPES:
        assert sum(spec.dtype == dtype for spec in shipped) >= 3, dtype
    assert {1, 8} <= {spec.batch for spec in shipped}
    assert any(spec.height % 2 or spec.width % 2 for spec in shipped)
    assert any(1 in (spec.height, spec.width) for spec in shipped), "no 1xN edge case"
    assert any(spec.padding == (0, 0) for spec in shipped)
    assert any(
        spec.output_hw == (spec.height, spec.width) and spec.kernel[0] > 1 for spec in shipped
    )
    assert any(not spec.bias for spec in shipped)
    assert any(spec.kernel[0] != spec.kernel[1] for spec in shipped), "no asymmetric kernel"


def test_shipped_matrix_stays_small(shipped: list[ConvSpec]) -> None:
    for spec in shipped:
        elements = 1
        for dim in spec.output_shape:
            elements *= dim
        assert elements < 2_000_000, spec.name
        assert max(spec.in_channels, spec.out_channels) <= 64, spec.name


# --------------------------------------------------------------------------------------------------
# Shape maths
# --------------------------------------------------------------------------------------------------


def _spec(**fields: object) -> ConvSpec:
    data: dict[str, object] = {**BASE_ENTRY, **fields}
    return ConvSpec.from_mapping(data, where="test")


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "padding", "dilation", "expected"),
    [
        (17, 3, 2, 1, 1, 9),  # (17 + 2 - 2 - 1) // 2 + 1
        (17, 3, 1, 1, 1, 17),  # "same"
        (19, 3, 1, 0, 1, 17),
        (33, 3, 1, 2, 2, 33),  # dilated "same"
        (31, 7, 2, 0, 1, 13),  # (31 - 6 - 1) // 2 + 1
        (1, 3, 1, 1, 1, 1),  # kernel larger than the input, padding makes it fit
        (9, 5, 2, 2, 1, 5),
        (7, 1, 2, 0, 1, 4),
    ],
)
def test_output_size_hand_checked(
    size: int, kernel: int, stride: int, padding: int, dilation: int, expected: int
) -> None:
    spec = _spec(
        height=size, width=size, kernel=kernel, stride=stride, padding=padding, dilation=dilation
    )
    assert spec.output_hw == (expected, expected)


def test_shapes_macs_and_pairs() -> None:
    spec = _spec(
        batch=8,
        in_channels=16,
        out_channels=32,
        height=17,
        width=19,
        kernel=[3, 1],
        stride=[2, 1],
        padding=[1, 0],
        dilation=[1, 2],
        groups=4,
    )
    assert spec.kernel == (3, 1) and spec.stride == (2, 1) and spec.dilation == (1, 2)
    assert spec.input_shape == (8, 16, 17, 19)
    assert spec.weight_shape == (32, 4, 3, 1)
    assert spec.output_shape == (8, 32, 9, 19)
    assert spec.macs == 8 * 32 * 9 * 19 * 4 * 3 * 1
    assert not spec.depthwise
    assert spec.bias is True


def test_depthwise() -> None:
    spec = _spec(in_channels=16, out_channels=32, groups="depthwise")
    assert spec.groups == 16 and spec.depthwise
    assert spec.weight_shape == (32, 1, 3, 3)
    assert _spec(in_channels=16, out_channels=16, groups=16).depthwise
    # groups = in_channels = 1 is an ordinary convolution, not a depthwise one.
    assert not _spec(in_channels=1, out_channels=4, groups="depthwise").depthwise


# --------------------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------------------


def test_to_toml_round_trips_every_shipped_spec(shipped: list[ConvSpec], tmp_path: Path) -> None:
    path = _write(tmp_path, *(spec.to_toml() for spec in shipped))
    assert load_matrix(path) == shipped
    for spec in shipped:
        one = _write(tmp_path, spec.to_toml())
        assert load_matrix(one) == [spec], spec.name


def test_to_dict_is_json_and_round_trips(shipped: list[ConvSpec]) -> None:
    for spec in shipped:
        data = json.loads(json.dumps(spec.to_dict()))
        assert ConvSpec.from_mapping(data, where="dict") == spec, spec.name
    assert shipped[0].to_dict()["kernel"] == list(shipped[0].kernel)


def test_output_shape_matches_torch(shipped: list[ConvSpec]) -> None:
    torch = pytest.importorskip("torch", reason="torch not installed")
    functional = torch.nn.functional
    for spec in shipped:
        bias = torch.zeros(spec.out_channels) if spec.bias else None
        out = functional.conv2d(
            torch.zeros(spec.input_shape),
            torch.zeros(spec.weight_shape),
            bias,
            stride=spec.stride,
            padding=spec.padding,
            dilation=spec.dilation,
            groups=spec.groups,
        )
        assert tuple(out.shape) == spec.output_shape, spec.name


# --------------------------------------------------------------------------------------------------
# Error messages: file level
# --------------------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    message = _load_error(tmp_path / "nowhere.toml")
    assert "nowhere.toml" in message and "not found" in message


def test_toml_syntax_error_carries_the_position(tmp_path: Path) -> None:
    path = _write(tmp_path, _entry(), "name = \n")
    message = _load_error(path)
    assert path.name in message and "TOML syntax error" in message
    assert "line" in message and "column" in message


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "conv_matrix.toml"
    path.write_bytes(b"schema = 1\n# \xff\n")
    message = _load_error(path)
    assert path.name in message and "UTF-8" in message


@pytest.mark.parametrize(
    ("head", "fragment"),
    [
        ("", "'schema': missing"),
        ("schema = 2\n", "got 2"),
        ("schema = true\n", "got true"),
        ('schema = "1"\n', 'got "1"'),
    ],
)
def test_bad_schema(tmp_path: Path, head: str, fragment: str) -> None:
    message = _load_error(_write(tmp_path, _entry(), head=head))
    assert "conv_matrix.toml" in message and "schema" in message and fragment in message


def test_schema_below_the_first_entry_is_explained(tmp_path: Path) -> None:
    message = _load_error(_write(tmp_path, _entry() + "schema = 1\n", head=""))
    assert "move it above the first [[conv]]" in message


def test_no_entries(tmp_path: Path) -> None:
    for text in ("schema = 1\n", "schema = 1\nconv = []\n"):
        path = tmp_path / "conv_matrix.toml"
        path.write_text(text, encoding="utf-8")
        message = _load_error(path)
        assert path.name in message and "no [[conv]] entries" in message


def test_conv_must_be_an_array_of_tables(tmp_path: Path) -> None:
    path = _write(tmp_path, _entry().replace("[[conv]]", "[conv]"))
    message = _load_error(path)
    assert path.name in message and "'conv'" in message and "array of tables" in message


def test_entry_must_be_a_table(tmp_path: Path) -> None:
    path = tmp_path / "conv_matrix.toml"
    path.write_text("schema = 1\nconv = [1]\n", encoding="utf-8")
    message = _load_error(path)
    assert path.name in message and "[[conv]] #1" in message and "expected a table" in message


def test_unknown_top_level_key(tmp_path: Path) -> None:
    message = _load_error(_write(tmp_path, _entry(), head="schema = 1\nversion = 3\n"))
    assert "conv_matrix.toml" in message and "'version'" in message


# --------------------------------------------------------------------------------------------------
# Error messages: entry level
# --------------------------------------------------------------------------------------------------

ENTRY_ERRORS: list[tuple[str, dict[str, object], str, str]] = [
    # id, overrides of the bad entry, the field named, another fragment of the message
    ("missing-field", {"batch": MISSING}, "batch", "missing"),
    ("missing-dtype", {"dtype": MISSING}, "dtype", "missing"),
    ("int-as-string", {"batch": "8"}, "batch", 'expected a positive integer, got "8"'),
    ("bool-as-int", {"in_channels": True}, "in_channels", "got true"),
    ("float-as-int", {"height": 17.0}, "height", "got 17.0"),
    ("zero-width", {"width": 0}, "width", "expected a positive integer, got 0"),
    ("negative-channels", {"out_channels": -4}, "out_channels", "got -4"),
    ("stride-zero", {"stride": 0}, "stride", "expected a positive integer or [h, w], got 0"),
    ("kernel-one-item", {"kernel": [3]}, "kernel", "got [3]"),
    ("kernel-three-items", {"kernel": [3, 3, 3]}, "kernel", "[h, w]"),
    ("kernel-bool-item", {"kernel": [True, 3]}, "kernel", "got [true, 3]"),
    ("kernel-string", {"kernel": "3x3"}, "kernel", '"3x3"'),
    ("padding-negative", {"padding": -1}, "padding", "expected a non-negative integer or [h, w]"),
    ("dilation-zero-item", {"dilation": [1, 0]}, "dilation", "got [1, 0]"),
    ("groups-zero", {"groups": 0}, "groups", 'positive integer or "depthwise"'),
    ("groups-bool", {"groups": True}, "groups", "got true"),
    ("groups-bad-string", {"groups": "dw"}, "groups", 'got "dw"'),
    ("groups-not-dividing-in", {"groups": 3}, "groups", "does not divide in_channels 16"),
    (
        "groups-not-dividing-out",
        {"out_channels": 12, "groups": 8},
        "groups",
        "does not divide out_channels 12",
    ),
    (
        "depthwise-bad-multiplier",
        {"out_channels": 24, "groups": "depthwise"},
        "groups",
        "multiple",
    ),
    ("dtype-unknown", {"dtype": "fp16"}, "dtype", "did you mean 'float16'?"),
    ("dtype-not-string", {"dtype": 16}, "dtype", '"float32", "float16", "bfloat16"'),
    ("bias-not-bool", {"bias": "yes"}, "bias", "expected true or false"),
    ("bias-int", {"bias": 1}, "bias", "got 1"),
    ("name-bad-chars", {"name": "k3 s1"}, "name", 'got "k3 s1"'),
    ("name-empty", {"name": ""}, "name", "non-empty"),
    ("name-not-string", {"name": 3}, "name", "got 3"),
    ("unknown-key", {"strides": 2}, "strides", "did you mean 'stride'?"),
    ("output-too-small", {"height": 3, "kernel": 5, "padding": 0}, "kernel", "output height"),
    (
        "dilated-output-too-small",
        {"width": 4, "dilation": [1, 3], "padding": 0},
        "kernel",
        "output width would be -2",
    ),
]


@pytest.mark.parametrize(
    ("overrides", "field", "fragment"),
    [case[1:] for case in ENTRY_ERRORS],
    ids=[case[0] for case in ENTRY_ERRORS],
)
def test_entry_error(
    tmp_path: Path, overrides: dict[str, object], field: str, fragment: str
) -> None:
    fields = {"name": "bad", **overrides}
    path = _write(tmp_path, _entry(), _entry(**fields))
    message = _load_error(path)
    name = fields["name"]
    where = f"[[conv]] #2 ({name!r})" if isinstance(name, str) else "[[conv]] #2 at line"
    assert message.startswith(f"{path}: {where}"), message
    assert f"field {field!r}" in message, message
    assert fragment in message, message
    assert "\n" not in message, "one bad entry must give one line"


def test_message_format_matches_the_documented_example(tmp_path: Path) -> None:
    entries = [_entry(name="a"), _entry(name="b"), _entry(name="k3_s2", stride=0)]
    path = _write(tmp_path, *entries)
    text = path.read_text(encoding="utf-8").splitlines()
    line = [number for number, content in enumerate(text, 1) if content == "[[conv]]"][2]
    assert _load_error(path) == (
        f"{path}: [[conv]] #3 ('k3_s2') at line {line}: field 'stride': "
        "expected a positive integer or [h, w], got 0"
    )


def test_duplicate_name_names_both_entries(tmp_path: Path) -> None:
    path = _write(tmp_path, _entry(name="twice"), _entry(name="other"), _entry(name="twice"))
    message = _load_error(path)
    assert message.startswith(f"{path}: [[conv]] #3 ('twice')")
    assert "field 'name'" in message and "duplicate" in message and "[[conv]] #1" in message


def test_all_bad_entries_are_reported_first_problem_each(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        _entry(name="ok"),
        _entry(name="two_problems", batch=0, dtype="fp64"),
        _entry(name="ok2"),
        _entry(name="stride_bad", stride=[1, 2, 3]),
        _entry(name="ok"),
    )
    lines = _load_error(path).splitlines()
    assert len(lines) == 3, lines
    assert all(line.startswith(f"{path}: [[conv]] #") for line in lines)
    assert "#2 ('two_problems')" in lines[0] and "field 'batch'" in lines[0]
    assert "dtype" not in lines[0]
    assert "#4 ('stride_bad')" in lines[1] and "field 'stride'" in lines[1]
    assert "#5 ('ok')" in lines[2] and "duplicate" in lines[2]


def test_paths_below_the_working_directory_are_shown_relative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "engines").mkdir()
    path = tmp_path / "engines" / "conv_matrix.toml"
    path.write_text(f"schema = 1\n\n{_entry(name='k3_s2', stride=0)}", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    message = _load_error(path)
    assert message.startswith("engines/conv_matrix.toml: [[conv]] #1 ('k3_s2') at line 3: ")


def test_optional_bias_defaults_to_true(tmp_path: Path) -> None:
    specs = load_matrix(_write(tmp_path, _entry(), _entry(name="nb", bias=False)))
    assert [spec.bias for spec in specs] == [True, False]


# --------------------------------------------------------------------------------------------------
# select
# --------------------------------------------------------------------------------------------------


def test_select(shipped: list[ConvSpec]) -> None:
    assert select(shipped, None) == shipped
    picked = [shipped[3].name, shipped[0].name, shipped[3].name]
    assert select(shipped, picked) == [shipped[0], shipped[3]]  # matrix order, no duplicates
    assert select(shipped, shipped[1].name) == [shipped[1]]  # a lone str is one name
    assert select(shipped, []) == []


def test_select_unknown_names(shipped: list[ConvSpec]) -> None:
    typo = shipped[0].name + "x"
    with pytest.raises(ConfigError) as info:
        select(shipped, [shipped[0].name, typo, "nope"])
    message = str(info.value)
    assert repr(typo) in message and "'nope'" in message
    assert f"did you mean {shipped[0].name!r}?" in message
