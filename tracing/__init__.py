"""tracing: the analytics engine -- close-contact rules, ID matching, contact graphs, notification
propagation (F0 -> F1 -> F2), coverage vs adoption, thresholds, plots, reports and the command line.

Layout (``docs/internals.md``): ``core/`` pure analytics over arrays; ``pipeline`` (simulated run ->
pair table), ``replay`` (real logs -> pair table), ``contacts`` (contact lists -> pair table);
``sweep/`` plans and runs sweeps; ``closedloop/`` the epidemic with interventions; ``report/`` tables,
plots and text; ``cli``/``commands`` the command line.

The names in ``__all__`` are the API a notebook needs. They load on first use (SPEC 1 lazy loading), so
that ``proxitrace --help`` and ``import tracing.core.matching`` do not pay for matplotlib and scipy.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from tracing.version import __version__

#: public name -> module that defines it
_EXPORTS = {
    "PAIR_DTYPE": "tracing.core.pairs",
    "RULES": "tracing.core.rules", "load_rule": "tracing.core.rules",
    "OnePass": "tracing.core.coverage", "coverage_curve": "tracing.core.coverage",
    "DelayModel": "tracing.core.coverage",
    "pairs_from_run": "tracing.pipeline",
    "read_contacts": "tracing.contacts", "pairs_from_contacts": "tracing.contacts",
    "replay": "tracing.replay",
    "sweep": "tracing.sweep.adoption", "coverage_from_contacts": "tracing.sweep.adoption",
    "run_closed_loop": "tracing.closedloop.loop",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:  # for type checkers and readers; at run time __getattr__ below imports on first use
    from tracing.closedloop.loop import run_closed_loop
    from tracing.contacts import pairs_from_contacts, read_contacts
    from tracing.core.coverage import DelayModel, OnePass, coverage_curve
    from tracing.core.pairs import PAIR_DTYPE
    from tracing.core.rules import RULES, load_rule
    from tracing.pipeline import pairs_from_run
    from tracing.replay import replay
    from tracing.sweep.adoption import coverage_from_contacts, sweep


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tracing' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
