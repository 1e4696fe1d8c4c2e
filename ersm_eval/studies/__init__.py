"""Studies: several checkpoints on the same images, grouped by training seed, with two-level statistics.

* :mod:`~ersm_eval.studies.groups`: which checkpoints are the same experiment from different seeds.
* :mod:`~ersm_eval.studies.stats`: mean ± std over seeds and the two-level (seeds, then images) bootstrap.
* :mod:`~ersm_eval.studies.verdicts`: group verdicts, how many seeds agree, and the sentences.
* :mod:`~ersm_eval.studies.tables`: members.csv, group_summary.csv and group_differences.csv.
* :mod:`~ersm_eval.studies.paper`: the pilot and backbone tables as display cells.

Pure numpy/pandas: nothing here imports torch.
"""

from ersm_eval.studies.groups import (
    DESCRIPTIVE_FIELDS,
    GROUP_COLUMNS,
    IGNORED_FIELDS,
    IGNORED_PREFIXES,
    CheckpointRecord,
    checkpoint_fields,
    checkpoint_seed,
    group_checkpoints,
    one_group_each,
)
from ersm_eval.studies.paper import (
    BACKBONE_FIELDS,
    DEFAULT_OWN_RANKING,
    FALLBACK_RANKING,
    MISSING,
    PaperTable,
    backbone_table,
    paper_tables,
    pilot_table,
    table_cell,
    verdict_cell,
)
from ersm_eval.studies.stats import (
    LEVEL,
    N_BOOT,
    DifferenceEstimate,
    GroupEstimate,
    TwoLevelBootstrap,
    group_difference,
    group_estimate,
    seed_values,
)
from ersm_eval.studies.tables import (
    DIFFERENCE_COLUMNS,
    DIFFERENCES_FILE,
    GROUPS_FILE,
    MEMBER_COLUMNS,
    MEMBERS_FILE,
    METRIC_ORDER,
    SUMMARY_COLUMNS,
    SUMMARY_FILE,
    StudyTables,
    read_study_tables,
    study_tables,
)
from ersm_eval.studies.verdicts import (
    ACCURACY_VERDICTS,
    DIFFERENCE_VERDICTS,
    NO_VERDICT,
    ONE_SEED_NOTE,
    ORDER_VERDICTS,
    accuracy_verdict,
    agreement_note,
    difference_sentence,
    difference_verdict,
    format_spread,
    format_value,
    group_sentence,
    group_verdict,
    metric_kind,
    order_verdict,
    seeds_agreeing,
    seeds_note,
)

__all__ = [
    # groups
    "DESCRIPTIVE_FIELDS", "GROUP_COLUMNS", "IGNORED_FIELDS", "IGNORED_PREFIXES", "CheckpointRecord",
    "checkpoint_fields", "checkpoint_seed", "group_checkpoints", "one_group_each",
    # stats
    "LEVEL", "N_BOOT", "DifferenceEstimate", "GroupEstimate", "TwoLevelBootstrap", "group_difference",
    "group_estimate", "seed_values",
    # verdicts
    "ACCURACY_VERDICTS", "DIFFERENCE_VERDICTS", "NO_VERDICT", "ONE_SEED_NOTE", "ORDER_VERDICTS",
    "accuracy_verdict", "agreement_note", "difference_sentence", "difference_verdict", "format_spread",
    "format_value", "group_sentence", "group_verdict", "metric_kind", "order_verdict", "seeds_agreeing",
    "seeds_note",
    # tables
    "DIFFERENCE_COLUMNS", "DIFFERENCES_FILE", "GROUPS_FILE", "MEMBER_COLUMNS", "MEMBERS_FILE", "METRIC_ORDER",
    "SUMMARY_COLUMNS", "SUMMARY_FILE", "StudyTables", "read_study_tables", "study_tables",
    # paper tables
    "BACKBONE_FIELDS", "DEFAULT_OWN_RANKING", "FALLBACK_RANKING", "MISSING", "PaperTable", "backbone_table",
    "paper_tables", "pilot_table", "table_cell", "verdict_cell",
]
