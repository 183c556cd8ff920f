"""What the book's figures share: one colour per model, the same in every figure.

matplotlib's default cycle has ten colours, so a figure of more than ten models gave two of
them the same one. :func:`model_colours` gives every model of the project its own colour from
the 20-colour ``tab20`` palette, in the order of :func:`hcp_lib.config.evaluated_model_names`,
so a model keeps its colour from figure to figure.
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
