"""Parameters of the epidemic closed loop: the interventions (testing, isolation, tracing) and the
reader of a scenario's ``[epidemic]``, ``[epidemic.interventions]`` and ``[qr]`` tables."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from sim.epidemic import EpidemicParams
from sim.qr import QRParams
from sim.scenario import read_toml

__all__ = ["Interventions", "load_closed_loop_params"]


@dataclass(frozen=True)
class Interventions:
    """Testing, isolation and tracing parameters (days, probabilities); see the module docstring.
    Also the loop's own settings: ``days`` (epidemic days), ``r_generations`` (generations of R_eff)
    and ``cycle_days`` (distinct simulated days of the replayed contact cycle of a sweep: at least two
    weeks for the week's rhythm; fewer only for tests and quick looks)."""
    p_test: float = 0.65
    test_delay_d: int = 2
    case_compliance: float = 0.9
    case_isolation_d: int = 14
    contact_compliance: float = 0.8
    isolation_d: int = 14
    dropout_per_day: float = 0.04
    lookback_days: int = 14
    app_delay_d: int = 1
    f2: bool = False
    f2_delay_d: int = 2
    manual_household: bool = True
    manual_delay_d: int = 1
    test_notified: bool = False
    oracle: bool = False
    days: int = 120
    r_generations: tuple = (2, 4)
    cycle_days: int = 14

    @classmethod
    def from_dict(cls, d: dict | None, source: str = "<interventions>") -> "Interventions":
        d = dict(d or {})
        base = asdict(cls())
        for k, v in d.items():
            key = f"{source}: epidemic.interventions.{k}"
            if k not in base:
                raise ValueError(f"{key}: unknown key (known: {', '.join(base)})")
            dv = base[k]
            if isinstance(dv, bool):
                if not isinstance(v, bool):
                    raise ValueError(f"{key}: must be true or false, got {v!r}")
            elif isinstance(dv, tuple):
                if not (isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) for x in v)
                        and 0 <= v[0] <= v[1]):
                    raise ValueError(f"{key}: must be [first, last] generations, got {v!r}")
                d[k] = tuple(v)
            elif isinstance(dv, int):
                lo = 1 if k in ("days", "cycle_days") else 0
                if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                    raise ValueError(f"{key}: must be an integer >= {lo}, got {v!r}")
            else:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                    raise ValueError(f"{key}: must be a probability in [0, 1], got {v!r}")
        return cls(**{**base, **d})


def load_closed_loop_params(path=None) -> tuple[EpidemicParams, Interventions, QRParams]:
    """(epidemic, interventions, QR) parameters from a scenario TOML (tables ``[epidemic]``,
    ``[epidemic.interventions]``, ``[qr]``; absent tables = defaults) or ``None`` (defaults)."""
    if path is None:
        return EpidemicParams(), Interventions(), QRParams()
    path = Path(path)
    raw = read_toml(path)
    epi = dict(raw.get("epidemic", {}))
    iv = epi.pop("interventions", {})
    return (EpidemicParams.from_dict(epi, path.name), Interventions.from_dict(iv, path.name),
            QRParams.from_dict(raw.get("qr", {}), path.name))
