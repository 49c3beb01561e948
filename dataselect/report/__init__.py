"""A study's report, written from what the study left on disk alone.

:func:`write_report` (:mod:`~dataselect.report.markdown`) reads the trials
back (:mod:`~dataselect.report.results`), compares every selector with
``random`` (:mod:`~dataselect.report.tables`, :mod:`~dataselect.report.stats`),
describes the subsets (:mod:`~dataselect.report.subsets`) and draws the
figures (:mod:`~dataselect.report.figures`). A study archive
(:mod:`~dataselect.report.archive`) is read the same way as a study folder.
"""

from dataselect.report.markdown import write_report
from dataselect.report.results import collect_results, count_column, load_trial_frames
from dataselect.report.tables import format_mean_std, summarize, summary_table

__all__ = ["collect_results", "count_column", "format_mean_std", "load_trial_frames", "summarize",
           "summary_table", "write_report"]
