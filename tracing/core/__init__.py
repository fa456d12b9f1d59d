"""Pure analytics over arrays: the pair table, close-contact rules, ID matching, coverage, percolation,
propagation (F0 -> F1 -> F2), thresholds and QR check-in warnings. No file I/O (except the packaged
rule definitions, read by ``rules.load_rule``) and no import of ``sim``."""
