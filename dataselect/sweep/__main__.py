"""``python -m dataselect.sweep CONFIG [--resume] [--address ADDR]``: the main job.

The one command-line app (:mod:`dataselect.cli`), running ``sweep`` unless
the first word names another command (``plan``, ``features``, ``report``...).
"""

from dataselect.cli import main

main(default="sweep")
