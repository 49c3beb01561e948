"""dataselect: training-data subset selection for text classifiers.

Features are computed once (Ray Data) into a parquet feature store,
selectors pick subsets from them, Ray Tune fine-tunes a classifier per
selector × fraction × seed, and a report compares every selector to random.
"""

__version__ = "0.1.0"
