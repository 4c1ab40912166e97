"""`snncompile report` / `inspect` / `--version`, and the HTML page in a real headless
Chromium (Debian's package): it loads without errors, every figure is present and
non-empty, and the screenshot is not blank."""
from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser

import numpy as np
import pytest

from snncompile.report import plots
from snncompile.cli import main

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--enable-logging=stderr",
                  "--v=0"]


def chromium() -> str:
    """Chromium's path; installs Debian's package when missing and possible (root with
    apt-get), skips naming why otherwise."""
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq",
                                                   "chromium"]):
            subprocess.run(cmd, capture_output=True, env=env, timeout=900)
        if shutil.which("chromium"):
            return shutil.which("chromium")
    pytest.skip("chromium is not installed and could not be installed (needs root and "
                "apt-get: `apt-get install chromium`; `make test` does this)")


def run_chromium(url: str, *args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                               *args, url], capture_output=True, timeout=120)


class Figures(HTMLParser):
    """<figure> elements of a DOM dump, with their <img> src and caption text."""

    def __init__(self):
        super().__init__()
        self.figures: list[dict] = []
        self.external: list[str] = []
        self._fig = None
        self._cap = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href"):
            v = a.get(key) or ""
            if v.startswith(("http:", "https:", "//")):
                self.external.append(v)
        if tag == "link" or (tag == "script" and a.get("src")):
            self.external.append(f"<{tag}>")
        if tag == "figure":
            self._fig = {"id": a.get("id"), "imgs": [], "caption": ""}
            self.figures.append(self._fig)
        elif tag == "img" and self._fig is not None:
            self._fig["imgs"].append(a.get("src") or "")
        elif tag == "figcaption":
            self._cap = True

    def handle_endtag(self, tag):
        if tag == "figure":
            self._fig = None
        elif tag == "figcaption":
            self._cap = False

    def handle_data(self, data):
        if self._cap and self._fig is not None:
            self._fig["caption"] += data


def _image(png: bytes) -> np.ndarray:
    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _not_blank(img: np.ndarray, min_ink: float = 0.01) -> None:
    ink = (img.min(axis=2) < 230).mean()         # pixels that are not (near) white
    colours = len(np.unique(img.reshape(-1, 3)[::7], axis=0))
    assert ink > min_ink and colours > 8, (ink, colours)


@pytest.fixture
def built(tiny_files, tmp_path):
    ckpt, inputs, x, y = tiny_files
    build = tmp_path / "tiny.build"
    assert main(["compile", str(ckpt), "--calib", str(inputs), "-o", str(build),
                 "--quiet"]) == 0
    return build, inputs, x, y


def _diverging_verify_json(build, x, y, dest, monkeypatch):
    """A verify report with a real first divergence: the simulator is made to drop one
    spike of the output layer (as a simulator bug would), reference stays right."""
    import snncompile.backends.sim.simulator as verify_mod   # the sim backend's Simulator
    from snncompile.build import Build
    from snncompile.verify.compare import verify

    real = verify_mod.Simulator

    class Broken(real):
        def run(self, *a, **k):
            res = super().run(*a, **k)
            s = res.spikes["lif2"]
            idx = np.argwhere(s)[0]
            s[tuple(idx)] = False
            return res

    monkeypatch.setattr(verify_mod, "Simulator", Broken)
    rep = verify(Build.load(build), x, y, ("reference", "sim"))
    monkeypatch.setattr(verify_mod, "Simulator", real)
    assert not rep.equivalent and rep.first_divergence["layer"] == "lif2"
    dest.write_text(json.dumps(rep.to_json()))
    return rep


def test_report_page_loads_in_chromium_with_every_figure(built, tmp_path, monkeypatch,
                                                         capsys):
    build, inputs, x, y = built
    _diverging_verify_json(build, x, y, tmp_path / "tiny.build.verify.json", monkeypatch)
    html_path, png_dir = tmp_path / "report.html", tmp_path / "png"
    assert main(["report", str(build), "--inputs", str(inputs), "-o", str(html_path),
                 "--png-dir", str(png_dir)]) == 0
    assert "wrote" in capsys.readouterr().out
    page = html_path.read_text()
    # fidelity_0: the compile's calibration check (report.json), fidelity_1: verify's
    expected = {"quantisation", "raster", "firing_rates", "membrane", "core_map", "energy",
                "latency", "divergence", "fidelity_0", "fidelity_1"}
    assert sorted(p.stem for p in png_dir.glob("*.png")) == sorted(expected)
    for p in png_dir.glob("*.png"):
        _not_blank(_image(p.read_bytes()))

    dom = run_chromium(html_path.as_uri(), "--dump-dom")
    assert dom.returncode == 0, dom.stderr.decode()[-2000:]
    log = dom.stderr.decode(errors="replace")
    assert "Uncaught" not in log and "Failed to load resource" not in log, log[-2000:]
    parsed = Figures()
    parsed.feed(dom.stdout.decode())
    assert not parsed.external, parsed.external          # opens without network access
    ids = {f["id"] for f in parsed.figures}
    assert ids == {f"fig-{n}" for n in expected}, ids
    for f in parsed.figures:
        assert len(f["imgs"]) == 1 and f["imgs"][0].startswith("data:image/png;base64,"), f["id"]
        png = base64.b64decode(f["imgs"][0].split(",", 1)[1])
        img = _image(png)
        assert img.shape[0] > 100 and img.shape[1] > 200, (f["id"], img.shape)
        _not_blank(img)
        assert f["caption"].strip(), f["id"]
    text = dom.stdout.decode()
    assert "NOT EQUIVALENT" in text and "tiny.pt on loihi2" in text
    # both fidelity entries are drawn: the compile's calibration check and verify's
    assert "From compile, on the calibration samples" in text
    assert "From verify, on its inputs" in text
    # the simulator was broken only while verify ran: the page says the re-run agrees
    assert "re-run of reference and simulator agrees" in text

    shot = tmp_path / "shot.png"
    res = run_chromium(html_path.as_uri(), f"--screenshot={shot}", "--window-size=1280,2400")
    assert res.returncode == 0 and shot.is_file(), res.stderr.decode()[-2000:]
    img = _image(shot.read_bytes())
    assert img.shape[:2] == (2400, 1280)
    _not_blank(img, min_ink=0.05)


def test_report_without_inputs_says_what_is_missing(built, tmp_path, capsys):
    build, inputs, x, y = built
    out = tmp_path / "r.html"
    assert main(["report", str(build), "-o", str(out)]) == 0
    page = out.read_text()
    assert page.count("Not available: pass --inputs") == 2      # spikes, energy
    assert "Not available: no verify report" in page
    assert 'id="fig-core_map"' in page and 'id="fig-quantisation"' in page
    assert main(["report", str(build), "-o", str(tmp_path / "r.txt")]) == 2
    assert main(["report", str(build)]) == 2
    err = capsys.readouterr().err
    assert "name it .html" in err and "-o FILE.html and/or --png-dir" in err


def test_report_refuses_a_verify_json_of_another_build(built, tmp_path, capsys):
    build, inputs, x, y = built
    doc = {"equivalent": True, "layers": [{"layer": "fc9"}]}
    (tmp_path / "v.json").write_text(json.dumps(doc))
    assert main(["report", str(build), "--verify-json", str(tmp_path / "v.json"), "-o",
                 str(tmp_path / "r.html")]) == 2
    assert "belongs to another build" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{")
    assert main(["inspect", str(build), "--verify-json", str(tmp_path / "bad.json")]) == 2


def test_inspect_names_input_target_cores_and_verdicts(built, tmp_path, monkeypatch,
                                                       capsys):
    build, inputs, x, y = built
    assert main(["inspect", str(build)]) == 0
    out = capsys.readouterr().out
    assert "frames of shape (1, 6, 6), spikes (0/1), values 0..1" in out
    assert "target      loihi2" in out and "1 core on 1 chip" in out
    assert "spike equivalence: not checked" in out
    _diverging_verify_json(build, x, y, tmp_path / "tiny.build.verify.json", monkeypatch)
    assert main(["inspect", str(build), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["input"]["shape"] == [1, 6, 6] and d["input"]["encoding"] == "spikes"
    assert d["input"]["bits"] == 1 and d["input"]["signed"] is False
    assert d["target"] == "loihi2" and d["cores"] == 1 and d["chips"] == 1
    assert d["equivalent"] is False
    assert any("NOT EQUIVALENT" in v for v in d["verdicts"])
    # NAME.verify.json beside NAME.build (what examples/demo.py writes) is found too
    (tmp_path / "tiny.build.verify.json").rename(tmp_path / "tiny.verify.json")
    assert main(["inspect", str(build), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["verify_json"] == str(tmp_path / "tiny.verify.json") and d["equivalent"] is False


def test_version(capsys):
    from snncompile import __version__
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"snncompile {__version__}"


def test_attention_build_shows_its_partition(tmp_path):
    from test_attention_compile import compiled

    from snncompile.build import Build
    from snncompile.report.html import build_page
    build, x = compiled("ca", True, 4)
    build.save(tmp_path / "att.build")
    page = build_page(Build.load(tmp_path / "att.build"))
    names = {f.name for f in page.figures}
    assert "partition" in names and "core_map" in names
    html = page.html()
    assert "Co-processor partition" in html and "neuro-&gt;coproc" in html


def _energy_json(per_layer: dict) -> dict:
    return {"target": "loihi2", "steps": 10, "per_layer": per_layer,
            "energy_per_inference_j": sum(sum(d.values()) for d in per_layer.values()),
            "dynamic_j": sum(v for d in per_layer.values() for k, v in d.items()
                             if k != "static"),
            "static_j": sum(d.get("static", 0.0) for d in per_layer.values()),
            "estimates": ["static_power_w"]}


def test_energy_chart_colours_fixed_title_names_model_legend_clear():
    a = _energy_json({"l1": {"synops": 1e-9, "messages": 2e-9, "static": 5e-9}})
    b = _energy_json({"l1": {"neuron_active": 3e-9, "messages": 1e-9, "static": 1e-9},
                      "l2": {"synops": 1e-9}})
    from matplotlib.colors import to_hex
    for doc in (a, b):
        fig = plots.energy_figure(doc, model="digits_conv.pt")
        assert fig._suptitle.get_text().startswith("digits_conv.pt on loihi2")
        ax = fig.axes[0]
        legend = fig.legends[0]
        colours = {t.get_text().split(" ")[0]: to_hex(h.get_facecolor())
                   for t, h in zip(legend.get_texts(), legend.legend_handles)}
        assert colours == {k: v for k, v in plots.EVENT_COLORS.items() if k != "static"}
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        lb = legend.get_window_extent(r)
        for axis in fig.axes:
            assert not lb.overlaps(axis.get_window_extent(r))
        w, h = fig.get_size_inches() * fig.dpi
        assert w >= 1000 and h >= 500
        static_bar = fig.axes[1].patches[1]
        assert to_hex(static_bar.get_facecolor()) == plots.EVENT_COLORS["static"]
        assert "static: estimate" in fig.axes[1].get_title()
        assert ax.get_ylabel().startswith("dynamic energy")


def test_hostile_verify_json_is_one_line_error(built, tmp_path, capsys):
    build, inputs, x, y = built
    rows = [{"layer": "lif1", "spikes": {}, "mismatches": {}},
            {"layer": "lif2", "spikes": {}, "mismatches": {}}]
    for doc in ({"equivalent": False, "layers": rows,
                 "first_divergence": {"layer": "lif2", "sides": {}, "sample": -1}},
                {"equivalent": True, "layers": rows, "backends": []},
                {"equivalent": True, "layers": ["lif1", "lif2"]}):
        (tmp_path / "v.json").write_text(json.dumps(doc))
        assert main(["report", str(build), "--verify-json", str(tmp_path / "v.json"), "-o",
                     str(tmp_path / "r.html")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "v.json" in err, err


def test_layer_names_with_dollar_signs_draw(tmp_path):
    fig = plots.rates_figure({"float": {r"$\\nope{$": 0.1, "a$b": 0.2}, "compiled": {"a$b": 0.3}})
    assert len(plots.png_bytes(fig)) > 1000


def test_fidelity_entries_of_compile_and_verify_are_shown(tiny_files, tmp_path):
    """report.json's and verify's "fidelity" entries (the format snncompile.verify.fidelity
    writes: verdict, layers with float/compiled activity, failures) become a table, a plot
    and a verdict line each."""
    from snncompile.build import Build
    from snncompile.pipeline import compile_model
    from snncompile.report.html import build_page, describe

    ckpt, inputs, x, y = tiny_files
    build = compile_model(ckpt, "loihi2", calib=inputs)
    layers = [{"layer": "lif1", "neurons": 108, "float": 300, "compiled": 290,
               "difference": -0.033, "correlation": 0.98, "graded": False},
              {"layer": "lif2", "neurons": 4, "float": 10, "compiled": 4,
               "difference": -0.6, "correlation": 0.5, "graded": False}]
    build.report["fidelity"] = {
        "checked": True, "faithful": False, "verdict": "NOT FAITHFUL", "reason": "",
        "float_model": "float/", "samples": 12, "steps": 10, "layers": layers,
        "tolerance": {"spikes": 0.25, "correlation": 0.9, "agreement": 0.9},
        "failures": ["lif2: spike count -60% vs float (tolerance +-25%)"], "notes": [],
        "sensitivity": {"draws": 3, "lines": ["sensitivity: lif2: <the float model moves "
                                              "it by -1% to +1%> outside that"]}}
    build.save(tmp_path / "f.build")
    vdoc = {"equivalent": True, "mismatches": 0, "samples": 12, "steps": 10,
            "backends": {"reference": {}, "sim": {}},
            "layers": [{"layer": n, "neurons": 1, "spikes": {}, "mismatches": {}}
                       for n in ("lif1", "lif2")],
            "fidelity": dict(build.report["fidelity"], verdict="FAITHFUL", failures=[])}
    (tmp_path / "f.build.verify.json").write_text(json.dumps(vdoc))
    b = Build.load(tmp_path / "f.build")
    page = build_page(b)
    html = page.html()
    assert {"fidelity_0", "fidelity_1"} <= {f.name for f in page.figures}
    assert "lif2: spike count -60% vs float" in html and "Not available: this build" not in html
    assert "The compile or the model?" in html            # the sensitivity lines, escaped
    assert "sensitivity: lif2: &lt;the float model moves it by -1% to +1%&gt;" in html
    lines = describe(b)["verdicts"]
    assert any(v.startswith("fidelity (float vs compiled): NOT FAITHFUL: lif2") for v in lines)
    assert any("FAITHFUL (from verify" in v for v in lines)
