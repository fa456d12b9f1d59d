"""Adoption sweeps: ``plan`` (grid, scenarios, work units), ``tasks`` (the units), ``engines``
(in-process, Dask), ``store`` (content-addressed results), ``replicate`` (seeds and curves of one
replicate), ``adoption`` (the ``sweep`` and ``coverage`` drivers), ``channels`` and ``epidemic`` (the
additive ``--channels`` and ``--epidemic`` stages)."""
