"""Figures: PNG + PDF written atomically, byte-identical on reruns, with a caption."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from rankrepro.pipeline.plotting import add_caption, apply_style, caption_text, save_figure


def _figure(layout: str | None = "constrained") -> plt.Figure:
    """A small figure with the parts that make layouts move: legend, colorbar, suptitle, caption."""
    apply_style()
    fig, axes = plt.subplots(1, 2, figsize=(4, 2), layout=layout)
    x = np.linspace(0.0, 1.0, 20)
    axes[0].plot(x, 1 / np.sqrt(2 * x + 0.1), label="1/√(2ℓ)")
    axes[0].invert_xaxis()
    axes[0].legend()
    sc = axes[1].scatter(x, x**2, c=np.arange(20), cmap="viridis")
    fig.colorbar(sc, ax=axes[1], label="iteration")
    fig.suptitle("test figure — σ₂/σ₁")
    add_caption(fig, caption_text("§1.1", "unit", "A long caption " * 12, substitutions="none"))
    return fig


def test_save_figure_writes_png_and_pdf_and_closes_the_figure(tmp_path):
    before = len(plt.get_fignums())
    fig = _figure()
    paths = save_figure(fig, tmp_path / "figs" / "panel.png")
    assert len(plt.get_fignums()) == before
    assert [p.name for p in paths] == ["panel.png", "panel.pdf"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths[1].read_bytes()[:5] == b"%PDF-"
    assert sorted(p.name for p in paths[0].parent.iterdir()) == ["panel.pdf", "panel.png"]  # no temp files
    pdf = paths[1].read_bytes()
    assert b"CreationDate" not in pdf and b"ModDate" not in pdf
    assert b"rankrepro" in pdf  # Creator/Producer replaced by a fixed string
    # the same figure object saved again gives the same bytes (the layout does not drift between draws)
    again = save_figure(fig, tmp_path / "again" / "panel.png")
    for a, b in zip(paths, again):
        assert a.read_bytes() == b.read_bytes(), a.suffix


def test_reruns_are_byte_identical(tmp_path):
    """The same figure drawn and saved twice gives byte-identical PNG and PDF (no dates, no random ids)."""
    first = save_figure(_figure(), tmp_path / "one" / "fig.png")
    second = save_figure(_figure(), tmp_path / "two" / "fig.png")
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes(), a.suffix


def test_caption_text_and_room_for_it():
    text = caption_text("§1.1", "smoke", "Plain GD.", "none")
    assert text == "§1.1 — tier 'smoke'. Plain GD. Substitutions: none."
    apply_style()
    fig, ax = plt.subplots(figsize=(5, 4))
    bottom = fig.subplotpars.bottom
    add_caption(fig, "word " * 100)
    assert fig.subplotpars.bottom > bottom  # the axes moved up to make room
    assert any("word" in t.get_text() and "\n" in t.get_text() for t in fig.texts)  # wrapped
    plt.close(fig)
