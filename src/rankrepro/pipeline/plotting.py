"""One figure style for every experiment, and reproducible PNG + PDF output with a caption.

Every figure carries a caption line (tier, settings, substitutions) under the axes; PDFs are written without
creation dates so reruns are byte-identical.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.layout_engine import PlaceHolderLayoutEngine  # noqa: E402

from rankrepro.core.io import atomic_write  # noqa: E402

PALETTE = "colorblind"


def apply_style() -> None:
    """Seaborn ``ticks`` style, colour-blind palette, fixed font sizes and a deterministic hash salt."""
    import seaborn as sns  # here, not at module level: claims jobs import this module and need no seaborn (0.6 s)

    sns.set_theme(style="ticks", palette=PALETTE, context="paper", font_scale=1.1)
    plt.rcParams.update(
        {
            "figure.dpi": 100,
            "savefig.dpi": 150,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "legend.frameon": False,
            "svg.hashsalt": "rankrepro",
            "pdf.fonttype": 42,
        }
    )


def caption_text(title: str, tier: str, details: str, substitutions: str = "none") -> str:
    """The caption written under a figure and into the report."""
    return f"{title} — tier '{tier}'. {details} Substitutions: {substitutions}."


def add_title(fig: plt.Figure, title: str) -> None:
    """Figure title, wrapped to the figure's width."""
    fig.suptitle(textwrap.fill(title, width=int(fig.get_figwidth() * 9)), fontsize=11)


def add_caption(fig: plt.Figure, caption: str) -> None:
    """Write ``caption`` (wrapped to the figure's width) under the axes, reserving room for it in the layout."""
    wrapped = textwrap.fill(caption, width=int(fig.get_figwidth() * 17))
    lines = wrapped.count("\n") + 1
    pad = min(0.4, (0.17 * lines + 0.12) / fig.get_figheight())
    engine = fig.get_layout_engine()
    if engine is not None and hasattr(engine, "set") and "rect" in engine.get():
        engine.set(rect=(0, pad, 1, 1 - pad))
    else:
        fig.subplots_adjust(bottom=min(0.45, fig.subplotpars.bottom + pad))
    fig.text(0.01, 0.005, wrapped, ha="left", va="bottom", fontsize=7.5, color="0.25")


def _freeze_layout(fig: plt.Figure) -> None:
    """Run the figure's layout engine once, then fix the axes where it put them.

    Constrained layout starts from the positions of the previous draw, so every draw (each ``savefig``) can move
    the axes a little: the PNG and the PDF would get different layouts, and saving the same figure again would give
    different bytes. After one layout pass the positions are kept for every format.
    """
    engine = fig.get_layout_engine()
    if engine is None or isinstance(engine, PlaceHolderLayoutEngine):
        return
    fig.draw_without_rendering()
    fig.set_layout_engine("none")


def save_figure(fig: plt.Figure, png_path: str | os.PathLike) -> list[Path]:
    """Save ``fig`` as ``<stem>.png`` and ``<stem>.pdf`` (atomic, no dates in metadata, one layout) and close it."""
    png_path = Path(png_path)
    pdf_path = png_path.with_suffix(".pdf")
    _freeze_layout(fig)
    atomic_write(png_path, lambda tmp: fig.savefig(tmp, format="png", metadata={"Software": None}))
    atomic_write(
        pdf_path,
        lambda tmp: fig.savefig(
            tmp,
            format="pdf",
            metadata={"CreationDate": None, "ModDate": None, "Creator": "rankrepro", "Producer": "rankrepro"},
        ),
    )
    plt.close(fig)
    return [png_path, pdf_path]
