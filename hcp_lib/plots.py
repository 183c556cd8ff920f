"""What the book's figures share: one colour per model, the same in every figure.

matplotlib's default cycle has ten colours, so a figure of more than ten models gave two of
them the same one. :func:`model_colours` gives every model of the project its own colour from
the 20-colour ``tab20`` palette, in the order of :func:`hcp_lib.config.evaluated_model_names`,
so a model keeps its colour from figure to figure. :func:`plan_value_figure` draws chapter 7's
comparison of the week's plans.
"""

from __future__ import annotations

from collections.abc import Iterable


def model_colours(models: Iterable[str]) -> dict[str, tuple[float, float, float, float]]:
    """A distinct RGBA colour for each name of ``models``.

    Parameters
    ----------
    models : iterable of str
        The models a figure shows (any order; names the project does not know get the
        palette's remaining colours, in the order given).

    Returns
    -------
    dict
        Model name -> RGBA tuple; the project's models keep the same colour in every figure.
    """
    import matplotlib

    from .config import evaluated_model_names

    palette = matplotlib.colormaps["tab20"].colors
    known = list(evaluated_model_names(hybrid_ablations=True))
    models = list(dict.fromkeys(models))
    order = known + [m for m in models if m not in known]
    if len(order) > len(palette):
        palette = [matplotlib.colormaps["gist_ncar"](i / len(order)) for i in range(len(order))]
    colours = {name: tuple(palette[i]) + ((1.0,) if len(palette[i]) == 3 else ()) for i, name in enumerate(order)}
    return {m: colours[m] for m in models}


#: the reference rows of :func:`hcp_lib.stages.evaluate.plan_table`
BUSINESS_AS_USUAL = "business as usual"
ORACLE_PLAN = "oracle plan"
#: how business as usual (a policy, not a model) is drawn: hatched, no colour a model could have
REFERENCE_STYLE = {"color": "white", "edgecolor": "black", "hatch": "///"}


def plan_value_figure(value, chosen: str, title: str | None = None):
    """The week's plans compared, in two panels (chapter 7, "What the plan is worth").

    Top: the chosen model's plan against business as usual, in expected engagements, each bar
    labelled with its value, the chosen plan's label with its multiple of business as usual; the
    oracle plan is a dashed reference line, not a bar, so it does not set the scale of the
    comparison. Bottom: every plan's share of the oracle plan's expected engagements with its 95%
    interval, each bar labelled; the oracle plan (100% by definition) is the dashed line at 100%,
    and business as usual is a hatched bar among the models. Models keep their
    :func:`model_colours`; the chosen model's name is bold.

    Parameters
    ----------
    value : pandas.DataFrame
        :func:`hcp_lib.stages.evaluate.plan_table`: one row per plan (models, ``business as
        usual``, ``oracle plan``), columns ``expected engagements``, ``share of oracle plan``,
        ``low``, ``high``.
    chosen : str
        The model the chapter's plan is made from (a row of ``value``).
    title : str, optional
        The figure's title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    import numpy as np

    missing = [name for name in (chosen, BUSINESS_AS_USUAL, ORACLE_PLAN) if name not in value.index]
    if missing:
        raise ValueError(f"the plan table has no row {missing[0]!r} (rows: {', '.join(map(str, value.index))})")
    engagements = value["expected engagements"].astype(float)
    bau, oracle, mine = (float(engagements[n]) for n in (BUSINESS_AS_USUAL, ORACLE_PLAN, chosen))
    colours = model_colours(n for n in value.index if n not in (BUSINESS_AS_USUAL, ORACLE_PLAN))

    def style(names) -> list[dict]:
        return [
            REFERENCE_STYLE if n == BUSINESS_AS_USUAL else {"color": colours[n], "edgecolor": "black"} for n in names
        ]

    def draw(axis, names, widths, **kwargs):
        bars = axis.barh(names, widths, linewidth=0.6, **kwargs)
        for bar, props in zip(bars, style(names)):
            bar.set_facecolor(props["color"])
            bar.set_edgecolor(props["edgecolor"])
            bar.set_hatch(props.get("hatch"))
        return bars

    shown = value.drop(index=ORACLE_PLAN).sort_values("share of oracle plan", kind="stable")
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(8.5, 2.8 + 0.3 * len(shown)), gridspec_kw={"height_ratios": [1.5, 0.3 * len(shown) + 0.4]}
    )

    names = [BUSINESS_AS_USUAL, chosen]
    bars = draw(top, names, [bau, mine], height=0.6)
    top.bar_label(bars, labels=[f"{bau:,.0f}", f"{mine:,.0f}"], padding=3)
    top.set_yticks([0, 1], [BUSINESS_AS_USUAL, f"{chosen}\n({mine / bau:.1f}× business as usual)"])
    top.axvline(oracle, color="black", linestyle="--", linewidth=1)
    top.text(oracle, -0.55, f" oracle plan\n {oracle:,.0f}", ha="left", va="bottom", fontsize="small")
    top.set_xlim(0, max(oracle, mine, bau) * 1.18)
    top.set_ylim(-0.6, 1.5)
    top.set_xlabel("expected engagements in the week (count)")
    top.set_ylabel("plan")
    top.set_title("The chosen model's plan against business as usual")

    share = shown["share of oracle plan"].to_numpy(float)
    low = np.nan_to_num(share - shown["low"].to_numpy(float)).clip(min=0)
    high = np.nan_to_num(shown["high"].to_numpy(float) - share).clip(min=0)
    draw(
        bottom,
        list(shown.index),
        share,
        xerr=np.vstack([low, high]),
        capsize=2,
        error_kw={"linewidth": 0.8, "ecolor": "black"},
    )
    for y, (x, plus) in enumerate(zip(share, high)):
        bottom.text(x + plus + 0.01, y, f"{x:.0%}", va="center", fontsize="small")
    bottom.axvline(1.0, color="black", linestyle="--", linewidth=1)
    bottom.text(1.01, -0.5, "oracle plan", rotation=90, ha="left", va="bottom", fontsize="small")
    bottom.set_xlim(0, 1.1)
    bottom.set_ylim(-0.6, len(shown) - 0.4)
    bottom.xaxis.set_major_formatter(plt.FuncFormatter(lambda x, _: f"{x:.0%}"))
    bottom.set_xlabel("share of the oracle plan's expected engagements (%; whiskers: 95% interval)")
    bottom.set_ylabel("plan made from")
    bottom.set_title("Every model's plan, as a share of the oracle plan")
    for axis in (top, bottom):
        for label in axis.get_yticklabels():
            if label.get_text().split("\n")[0] == chosen:
                label.set_fontweight("bold")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
