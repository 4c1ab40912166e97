"""Target TOML files are untrusted input: every number is type- and range-checked once, when
the target is loaded, and a bad one is one line naming the file, the key, the value and the
allowed range (before, bits <= 0, negative shifts and zero limits were tracebacks in
quantize/place/split/partition, and a NaN energy printed "nan J" with exit 0)."""
from __future__ import annotations

import re

import pytest

from snncompile.cli import main
from snncompile.errors import InputFileError
from snncompile.target import RANGES, TARGETS_DIR, load_target

LOIHI2 = (TARGETS_DIR / "loihi2.toml").read_text()


def _with(tmp_path, section: str, key: str, value: str, name="t.toml"):
    """loihi2.toml with `key` of `[section]` set to the TOML text `value`."""
    head, sep, rest = LOIHI2.partition(f"[{section}]\n")
    rest, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", rest, count=1)
    assert sep and n == 1, (section, key)
    path = tmp_path / name
    path.write_text(head + sep + rest)
    return path


BAD = [
    ("numerics", "weight_bits", "0", r"weight_bits = 0 must be an integer in \[2, 16\]"),
    ("numerics", "weight_bits", "-3", "weight_bits = -3"),
    ("numerics", "weight_bits", "2.5", r"weight_bits = 2.5 must be an integer"),
    ("numerics", "weight_bits", '"8"', "weight_bits = '8' must be an integer"),
    ("numerics", "weight_bits", "true", "weight_bits = True must be an integer"),
    ("numerics", "decay_bits", "0", r"decay_bits = 0 must be an integer in \[1, 16\]"),
    ("numerics", "state_bits", "1000", "state_bits = 1000"),
    ("numerics", "act_shift", "-1", r"act_shift = -1 must be an integer in \[0, 16\]"),
    ("numerics", "vth_shift", "-6", "vth_shift = -6"),
    ("numerics", "weight_exp_max", "-9", "weight_exp_max = -9"),
    ("numerics", "weight_exp_min", "5", "weight_exp_min = 5"),
    ("numerics", "bias_exp_max", "99999999999999999", "bias_exp_max = 99999999999999999"),
    ("limits", "neurons", "0", r"\[limits\] neurons = 0 must be an integer in \[1, "),
    ("limits", "input_axons", "-5", "input_axons = -5"),
    ("limits", "synapse_word_bits", "0", "synapse_word_bits = 0"),
    ("limits", "conv_weight_sharing", "1", "conv_weight_sharing = 1 must be true or false"),
    ("chip", "cores_per_chip", "0", "cores_per_chip = 0"),
    ("chip", "mesh_x", "1", "holds fewer than cores_per_chip"),
    ("chip", "max_chips", "0", "max_chips = 0"),
    ("energy", "synop_j", "nan", r"synop_j = nan must be a finite number in \[0, 1000\]"),
    ("energy", "static_power_w", "inf", "static_power_w = inf"),
    ("energy", "hop_ew_j", "-1e-12", "hop_ew_j = -1e-12"),
    ("energy", "barrier_min_s", "1e-3", "barrier_min_s = 0.001 must not exceed barrier_max_s"),
    ("energy", "barrier_max_tiles", "0", "barrier_max_tiles = 0"),
    ("coproc", "clock_hz", "0", r"\[coproc\] clock_hz = 0 must be a finite number in \[1, "),
    ("coproc", "bytes_per_s", "nan", "bytes_per_s = nan"),
    ("coproc", "cycles_per_mac", "[1, 2]", r"cycles_per_mac = \[1, 2\]"),
]


@pytest.mark.parametrize("section, key, value, match", BAD,
                         ids=[f"{s}.{k}={v}" for s, k, v, _ in BAD])
def test_bad_numbers_are_refused_naming_key_value_range(tmp_path, section, key, value, match):
    path = _with(tmp_path, section, key, value)
    with pytest.raises(InputFileError, match=match) as info:
        load_target(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_every_built_in_target_is_inside_the_ranges():
    for name in ("loihi1", "loihi2", "loihi1-sanafe", "loihi1-system"):
        spec = load_target(name)
        for section, ranges in RANGES.items():
            obj = getattr(spec, section, None)
            for key, (lo, hi) in ranges.items():
                if obj is not None and hasattr(obj, key):
                    assert lo <= getattr(obj, key) <= hi, (name, section, key)


@pytest.mark.parametrize("text, match", [
    ("x = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply|not a valid TOML"),
    ("numerics = 5\n", r"\[numerics\] must be a table"),
    ("name = 'x'\n", r"has no \[numerics\] table"),
    ("base = 5\n", "base = 5 must name a target"),
    ("\xff\xfe", "not a valid TOML"),
])
def test_malformed_files(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(InputFileError, match=match):
        load_target(path)


def test_unknown_coproc_key_and_directory(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(LOIHI2.replace("clock_hz = ", "clock_mhz = "))
    with pytest.raises(InputFileError, match="unknown key 'clock_mhz'"):
        load_target(path)
    (tmp_path / "d.toml").mkdir()
    with pytest.raises(InputFileError, match="not a regular file"):
        load_target(tmp_path / "d.toml")


def test_nan_energy_is_exit_2_not_nan_joules(tiny_files, tmp_path, capsys):
    """The CLI path the audit found: `energy --energy-table` with a NaN printed 'nan J' and
    exited 0; a compile with a zero neuron limit raised in place.py."""
    ckpt, inputs, _, _ = tiny_files
    build = tmp_path / "b"
    assert main(["compile", str(ckpt), "-o", str(build), "--calib", str(inputs),
                 "--quiet"]) == 0
    capsys.readouterr()
    table = _with(tmp_path, "energy", "synop_j", "nan", "e.toml")
    assert main(["energy", str(build), "--inputs", str(inputs), "--energy-table",
                 str(table)]) == 2
    out = capsys.readouterr()
    assert "nan J" not in out.out and out.err.count("\n") == 1 and "synop_j = nan" in out.err
    target = _with(tmp_path, "limits", "neurons", "0", "n.toml")
    assert main(["compile", str(ckpt), "--target", str(target), "-o", str(tmp_path / "c"),
                 "--calib", str(inputs)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "neurons = 0" in err
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("base, match", [
    ("/etc/hostname", "must be a built-in target"),
    ("../outside.toml", "must be a built-in target"),
    ("t.toml", "refers back to itself"),
    ("missing.toml", "target file not found"),
])
def test_base_names_only_built_in_targets_or_siblings(tmp_path, base, match):
    """`base` could name any file (read, parsed, named in the error); now only a built-in
    target or a .toml file next to the one that names it."""
    path = tmp_path / "t.toml"
    path.write_text(f'base = "{base}"\n[energy]\nsynop_j = 1e-12\n')
    with pytest.raises(InputFileError, match=match):
        load_target(path)
    sibling = tmp_path / "s.toml"
    sibling.write_text('base = "loihi1"\n')
    path.write_text('base = "s.toml"\n')
    assert load_target(path).numerics == load_target("loihi1").numerics
