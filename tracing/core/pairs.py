"""The pair table: the interface between "logs -> contacts" and "contacts -> coverage".

One row per unordered pair of agents and day on which they were truly close or the radio logged them.
Built from a simulator run (windows + keys + ground truth, through ID matching and a close-contact
rule) or from an external contact list (every listed pair truly close; notified as ``detected`` says).

Direction matters for notification: ``notify_j`` says that *j's* log of *i*'s rolling IDs passes the
close-contact rule, i.e. j is warned when i is an index case (and both run the app); ``notify_i`` is the
reverse. Times in seconds; ``t_first`` is the first moment of the contact that day (NaN if unknown,
which disables time ordering in F2 propagation).
"""
import numpy as np

__all__ = ["PAIR_DTYPE"]

PAIR_DTYPE = np.dtype([
    ("i", "i8"),             # agent, i < j
    ("j", "i8"),
    ("day", "i4"),
    ("t_first", "f8"),       # s, first time close or detected that day; NaN = unknown
    ("true_close", "?"),     # ground truth: within the close distance for >= the close time that day
    ("notify_j", "?"),       # j's log of i passes the rule (j warned if i is F0)
    ("notify_i", "?"),       # i's log of j passes the rule
    ("minutes", "f4"),       # min, (weighted) exposure minutes the rule computed (max of directions)
    ("att", "f4"),           # dB, typical attenuation (NaN if unknown)
])

