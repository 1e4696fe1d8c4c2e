"""The sections after the glance tables: deletion, occlusion, sparsity and localization, galleries.

Each section holds its figures and tables; the sentences describing the numbers sit
folded under them (:mod:`reports.html.readings`).
"""

from __future__ import annotations

import pandas as pd

from reports.figures_agreement import plot_ranking_agreement
from reports.figures_deletion import plot_deletion_curves, plot_deletion_summary
from reports.figures_insertion import plot_insertion_curves
from reports.figures_gallery import FAILURE_KINDS, failure_examples, improvement_examples, plain_examples, plot_mask_gallery
from reports.figures_localization import plot_localization
from reports.figures_occlusion import plot_occlusion
from reports.figures_sparsity import plot_keep_by_correctness, plot_keep_histogram, plot_per_class_keep
from reports.html.blocks import FigureBlock, Figures, Reading, Section, has, slug, words
from reports.html.detail_tables import (
    deletion_table,
    diagnostics_table,
    insertion_table,
    localization_table,
    occlusion_table,
    sparsity_table,
)
from reports.html.readings import agreement_readings, occlusion_readings, random_readings, sparsity_readings
from reports.tables import Run

__all__ = ["deletion_curves_figure", "evaluation_sections", "gallery_section"]


def deletion_curves_figure(tables: dict[str, pd.DataFrame], figures: Figures, at_chance: set[str]) -> FigureBlock | None:
    """The key figure, shown right after the glance tables: accuracy against tokens deleted, per ranking."""
    curves = tables["deletion_curves.csv"]
    if not has(curves):
        return None
    return figures.add(lambda: plot_deletion_curves(curves, no_information=at_chance), "deletion_curves",
                       "Accuracy against patches removed, per ranking (bands: 95% CI; random: mean and min–max over seeds).")


def evaluation_sections(tables: dict[str, pd.DataFrame], figures: Figures,
                        at_chance: frozenset[str] | set[str] = frozenset()) -> list[Section]:
    """The deletion, occlusion and sparsity/localization sections, for the evaluations present
    (``at_chance``: series whose model cannot be told from guessing, faded in the insertion figure)."""
    sections: list[Section] = []
    dsum, agree, diag = (tables[n] for n in ("deletion_summary.csv", "ranking_agreement.csv", "energy_diagnostics.csv"))
    icurves, isum = tables["insertion_curves.csv"], tables["insertion_summary.csv"]
    if has(dsum) or has(agree) or has(diag) or has(icurves) or has(isum):
        sec = Section(id="deletion", title="Deletion",
                      intro="Tokens of the final feature map are deleted in the order each ranking gives (first = deleted first) "
                            "and top-1 accuracy is measured after each step; the pooled map is rescaled to the tokens left. "
                            "The glance tables compare the area under each curve with random's.")
        if has(dsum):
            sec.readings += random_readings(dsum)
            sec.figures.append(figures.add(lambda: plot_deletion_summary(dsum), "deletion_summary",
                                           "Area under the deletion curve per ranking, and ΔAUC to random with its 95% CI."))
            sec.tables.append(deletion_table(dsum))
        if has(icurves) or has(isum):
            sec.intro += (" Insertion runs the other way at the input level: each image starts blurred and its pixels "
                          "come back token by token, most important first; a higher area is better.")
        if has(icurves):
            sec.figures.append(figures.add(lambda: plot_insertion_curves(icurves, no_information=at_chance),
                                           "insertion_curves",
                                           "Insertion: accuracy as the original pixels come back into the blurred "
                                           "image, most important tokens first (bands: 95% CI; random: mean and "
                                           "min–max over seeds)."))
        if has(isum):
            sec.tables.append(insertion_table(isum))
        if has(diag):
            sec.tables.append(diagnostics_table(diag))
        if has(agree):
            sec.figures.append(figures.add(lambda: plot_ranking_agreement(agree), "ranking_agreement",
                                           "Mean per-image Spearman correlation between the deletion orders of two rankings."))
            sec.readings += [Reading(f"{r.heading}: ranking agreement", r.sentences) for r in agreement_readings(agree)]
        sections.append(sec)

    occ, osum = tables["occlusion.csv"], tables["occlusion_summary.csv"]
    if has(occ) or has(osum):
        sec = Section(id="occlusion", title="Occlusion",
                      intro="Input regions are covered by an occluder (fill) in a pattern at growing severity. "
                            "Relative robustness is accuracy under occlusion divided by clean accuracy.")
        if has(occ):
            sec.figures.append(figures.add(lambda: plot_occlusion(occ), "occlusion",
                                           "Accuracy against occlusion severity; one panel per pattern, one colour per checkpoint, "
                                           "one line style per fill."))
        sec.readings += occlusion_readings(occ, osum)
        if has(osum):
            sec.tables.append(occlusion_table(osum))
        sections.append(sec)

    stats, hist, per_class, per_image, loc = (tables[n] for n in ("sparsity_summary.csv", "keep_histogram.csv",
                                                                  "per_class_keep.csv", "per_image.csv", "localization.csv"))
    if any(has(t) for t in (stats, hist, per_class, per_image, loc)):
        sec = Section(id="sparsity", title="Sparsity and localization",
                      intro="How much of the feature map the gate keeps, for which images and classes, and whether what it keeps "
                            "lies on the object, measured beside a uniform and a centre map that know nothing about the image.")
        sec.readings += sparsity_readings({"sparsity_summary.csv": stats, "per_image.csv": per_image,
                                           "per_class_keep.csv": per_class})
        if has(hist):
            sec.figures.append(figures.add(lambda: plot_keep_histogram(hist), "keep_histogram",
                                           "Distribution of per-image keep rates (keep_histogram.csv)."))
        if has(per_class) and per_class["mean_keep"].notna().any():
            sec.figures.append(figures.add(lambda: plot_per_class_keep(per_class), "per_class_keep",
                                           "Mean keep probability per class, and class accuracy against it."))
        if has(per_image) and per_image["mean_keep"].notna().any():
            sec.figures.append(figures.add(lambda: plot_keep_by_correctness(per_image), "keep_by_correctness",
                                           "Per-image mean keep probability of correctly and wrongly classified images."))
        if has(loc):
            sec.figures.append(figures.add(lambda: plot_localization(loc), "localization",
                                           "Localization against the object mask or box per map, beside the uniform and centre "
                                           "maps (grey; 95% CI)."))
            sec.tables.append(localization_table(loc))
        if has(stats):
            sec.tables.append(sparsity_table(stats))
        sections.append(sec)
    return sections


def gallery_section(runs: list[Run], figures: Figures) -> Section | None:
    """Per run with maps.npz: its mask gallery, improvements over the baseline, and failures by kind."""
    baseline = next((r for r in runs if r.is_baseline and r.table("per_image.csv") is not None), None)
    subsections = []
    for number, run in enumerate(runs):
        if run.maps is None:
            continue
        name = slug(run.label)
        sub = Section(id=f"gallery-{number + 1}-{name}", title=run.label)
        n_maps = len(run.maps["index"])
        plain = plain_examples(run)
        sentences = [f"maps.npz holds {n_maps} images chosen by the sparsity run; the mask gallery shows the first {len(plain)}."]
        if plain:
            sub.figures.append(figures.add(lambda: plot_mask_gallery(run.maps, plain, title=f"{run.label}: mask gallery"),
                                           f"gallery_{name}", f"{run.label}: image, map and faded view", tight=False))
        if baseline is not None and baseline is not run and not run.is_baseline:
            better = improvement_examples(run, baseline)
            sentences.append(f"{len(better)} of these images are wrong for {baseline.label} and right for {run.label}"
                             + (" (showing up to 6)." if better else "."))
            if better:
                sub.figures.append(figures.add(
                    lambda: plot_mask_gallery(run.maps, better, title=f"Improvements: {baseline.label} wrong, {run.label} right"),
                    f"improvements_{name}", f"{run.label}: improvements over {baseline.label}", tight=False))
        per_image = run.table("per_image.csv")
        for kind, meaning in FAILURE_KINDS.items():
            chosen = failure_examples(run, kind)
            available = len(failure_examples(run, kind, limit=n_maps))
            total = int((per_image["failure"] == kind).sum()) if per_image is not None else 0
            if total:
                sentences.append(f"{total} images are '{words(kind)}' failures ({meaning}); {available} of them are in maps.npz"
                                 + (f", {len(chosen)} shown." if chosen else "."))
            if chosen:
                sub.figures.append(figures.add(
                    lambda: plot_mask_gallery(run.maps, chosen, title=f"{run.label}: failures, {words(kind)} ({meaning})"),
                    f"failures_{kind}_{name}", f"{run.label}: {words(kind)} failures", tight=False))
        sub.readings.append(Reading("What is shown", sentences))
        if sub.figures:
            subsections.append(sub)
    if not subsections:
        return None
    return Section(id="galleries", title="Galleries", subsections=subsections,
                   intro="Each example shows the transformed input, the map the model gates with (keep probability π; "
                         "CAM for models without a gate) and the image multiplied by the bilinearly upsampled map. "
                         "The dashed outline is the object mask where the dataset has one.")
