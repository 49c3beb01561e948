"""The Ray side of a study: stages, Tune trials, console, locks and preflight.

``python -m dataselect.sweep CONFIG`` runs :func:`dataselect.sweep.run.run_sweep`:
preflight (:mod:`~dataselect.sweep.preflight`, before Ray), the feature and
select stages (:mod:`~dataselect.sweep.stages`, :mod:`~dataselect.sweep.select_stage`,
:mod:`~dataselect.sweep.partition_stage`), one Tune trial per grid cell
(:mod:`~dataselect.sweep.trial`, :mod:`~dataselect.sweep.callbacks`) and the
report (:mod:`dataselect.report`). Nothing is imported here, so a command
that needs one module does not pay for the rest.
"""
